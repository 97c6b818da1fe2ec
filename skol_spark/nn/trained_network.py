"""The trained network as a value: architecture JSON, weights body, one digest.

A :class:`TrainedNetwork` is what ``fit`` produces, what the model's Params
hold, what the executors rebuild, and what every store saves and loads:

* ``architecture``: the Keras model JSON, without a compile configuration;
* ``weights``: the weights as an ``.npz`` body (numpy arrays only, no pickle);
* ``digest``: the SHA-256 of ``weights``, the one checksum used everywhere
  (the worker cache key, the saved checksum).

It is immutable and cheap to pickle (two strings and bytes), so the labeling
UDF ships it as is. Rebuilding goes through the project's
:func:`~skol_spark.nn.network.model_from_json` (``compile=False``), in Keras safe
mode by default, exactly as executors and loaders do.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skol_spark.errors import ModelRebuildError, UnsafeModelError

__all__ = ["TrainedNetwork", "weights_to_bytes", "weights_from_bytes"]


def weights_to_bytes(weights: Sequence[np.ndarray]) -> bytes:
    """Serialize a list of weight arrays as an ``.npz`` body (no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"w{i:04d}": np.asarray(w) for i, w in enumerate(weights)})
    return buffer.getvalue()


def weights_from_bytes(body: bytes) -> list[np.ndarray]:
    """Inverse of :func:`weights_to_bytes`; refuses pickled object arrays."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            names = sorted(archive.files)
            return [archive[name] for name in names]
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"Could not read model weights: the body is not a valid .npz ({exc})") from exc


@dataclass(frozen=True)
class TrainedNetwork:
    """A trained Keras network as data.

    Parameters
    ----------
    architecture : str
        Keras model JSON (``model.to_json()``). A compile configuration in it
        is ignored: :meth:`rebuild` drops it, as executors do.
    weights : bytes
        The weights as an ``.npz`` body (:func:`weights_to_bytes`).

    Examples
    --------
    >>> trained = TrainedNetwork.from_keras(network)      # doctest: +SKIP
    >>> trained.digest[:12]                               # doctest: +SKIP
    >>> same = trained.rebuild()                          # doctest: +SKIP
    """

    architecture: str
    weights: bytes = field(repr=False)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, (bytes, bytearray)):
            raise TypeError(f"Expected weights as bytes. Received: {type(self.weights).__name__}")
        if not isinstance(self.architecture, str):
            raise TypeError(
                f"Expected the architecture as a JSON string. Received: {type(self.architecture).__name__}"
            )
        object.__setattr__(self, "weights", bytes(self.weights))
        object.__setattr__(self, "digest", hashlib.sha256(self.weights).hexdigest())

    @classmethod
    def from_keras(cls, network: Any) -> TrainedNetwork:
        """The value of a Keras model: its JSON (without compile configuration) and weights."""
        from skol_spark.nn.network import strip_compile_config

        architecture = json.dumps(strip_compile_config(json.loads(network.to_json())))
        return cls(architecture, weights_to_bytes(network.get_weights()))

    @classmethod
    def from_params(cls, architecture: str, weights_base64: str) -> TrainedNetwork:
        """From the model's ``modelJson`` and ``modelWeights`` (base64) Params."""
        return cls(architecture, base64.b64decode(weights_base64))

    @property
    def weights_base64(self) -> str:
        """The body as the ``modelWeights`` Param holds it."""
        return base64.b64encode(self.weights).decode("ascii")

    def weight_arrays(self) -> list[np.ndarray]:
        return weights_from_bytes(self.weights)

    def rebuild(self, safe_mode: bool = True) -> Any:
        """The network with these weights, uncompiled, as executors rebuild it.

        Raises :class:`~skol_spark.errors.UnsafeModelError` when Keras safe
        mode refuses the architecture (a ``Lambda`` layer, an unknown class),
        :class:`~skol_spark.errors.ModelRebuildError` for anything else that
        stops the rebuild (unreadable JSON, weights that do not fit).
        """
        from skol_spark.nn.network import model_from_json

        try:
            arrays = self.weight_arrays()
        except ValueError as exc:
            raise ModelRebuildError(str(exc)) from exc
        try:
            network = model_from_json(self.architecture, compile=False, safe_mode=safe_mode)
        except Exception as exc:  # noqa: BLE001 - Keras raises many types here
            text = str(exc)
            first = text.splitlines()[0][:200] if text else ""
            if "safe_mode" in text or "Lambda" in text or "unsafe" in text.lower():
                raise UnsafeModelError(
                    f"the architecture asks for code Keras safe mode refuses to run ({first})."
                ) from exc
            raise ModelRebuildError(
                f"the architecture cannot be rebuilt from its JSON ({type(exc).__name__}: {first})."
            ) from exc
        try:
            network.set_weights(arrays)
        except ValueError as exc:
            raise ModelRebuildError(f"the weights do not fit the architecture ({exc}).") from exc
        return network

    def verify(self, reference: Any, probe: Sequence[Any]) -> Any:
        """Rebuild and check it predicts what ``reference`` (a Keras model) does; returns the rebuild.

        ``probe`` is the network's input: ``[features, mask]``, or ``[features]``
        for a network without a mask input.
        """
        import keras

        rebuilt = self.rebuild()
        inputs = list(probe) if len(probe) > 1 else probe[0]
        expected = keras.ops.convert_to_numpy(reference(inputs, training=False))
        actual = keras.ops.convert_to_numpy(rebuilt(inputs, training=False))
        if not np.allclose(expected, actual, atol=1e-5):
            raise ModelRebuildError(
                "the network rebuilt from its JSON predicts differently from the original "
                f"(max difference {np.abs(expected - actual).max():.3g})."
            )
        return rebuilt
