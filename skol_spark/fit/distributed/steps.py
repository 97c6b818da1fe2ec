"""One rank's JAX programs for a data-parallel step: local gradient, ONE all-reduce, update.

A step is three compiled programs:

1. ``gradient`` (this process only): the network's ``stateless_call`` on the
   rank's local windows under ``jax.value_and_grad``, with nothing sharded, so
   the LSTM's backward scan runs as on one machine. It returns one float32
   vector ``[gradient of the summed weighted loss, loss sum, real positions]``
   (the gradient tree flattened with ``ravel_pytree``).
2. ``Collective.sum``: one all-reduce of that vector over the ranks (a ring
   over TCP, :mod:`~skol_spark.fit.distributed.ring`). Summing sums makes the
   result the gradient of the global batch's mean loss once divided by the
   summed count, whatever each rank's share of real positions.
3. ``update`` (this process only): that division, Keras' optimizer
   ``stateless_apply``, and a checksum of the new weights computed on the
   device (integer sums, so equal bits give equal checksums on every rank).

Every rank applies the same update to the same weights, so weights stay
identical without being broadcast. Keras' ``DataParallel`` instead lets
XLA's SPMD partitioner place the all-reduces, and it puts one per LSTM
direction per timestep inside the backward scan (2 x window x layers small
all-reduces a step).

Row-sparse projection (:class:`RowSparseStep`): with sparse rows and a
projected network, a batch's distinct rows and the kernel rows of the columns
they use are the projection's inputs, so its gradient is ``(C, E)`` for the
C columns used, never ``(D, E)``. The kernel then takes a lazy Adam update
of the rows any rank used (as the driver's :class:`~skol_spark.fit.sparse_training.LazyAdam`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Collective", "DenseStep", "Forward", "checksum"]

# The checksum's per-element multipliers: odd, so that a change of any one bit changes the sum.
_MIX = 2654435761


def checksum(arrays: list[Any]) -> Any:
    """A uint32 checksum of float32 arrays' bits (inside jit): order-independent integer sums, so
    bitwise-equal arrays give equal checksums whatever the reduction order."""
    import jax
    import jax.numpy as jnp

    total = jnp.uint32(0)
    for i, a in enumerate(arrays):
        bits = jax.lax.bitcast_convert_type(jnp.ravel(a).astype(jnp.float32), jnp.uint32)
        weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(_MIX) + jnp.uint32(2 * i + 1)
        total = total * jnp.uint32(31) + jnp.sum(bits * weights, dtype=jnp.uint32)
    return total


class Collective:
    """The ranks' collectives (:class:`~skol_spark.fit.distributed.ring.Ring`) on JAX arrays of this process."""

    def __init__(self, ring: Any) -> None:
        """``ring``: a Ring, or a callable giving it (a ring still connecting is waited for when first used)."""
        import jax

        self._ring = ring
        self.device = jax.local_devices()[0]

    @property
    def ring(self) -> Any:
        return self._ring() if callable(self._ring) else self._ring

    def sum(self, local: Any, meanwhile: Any = None) -> Any:
        """The sum over ranks of each rank's 1-D float32 array, as a JAX array here (a single
        rank's own array, which never leaves the device). ``meanwhile`` (a callable: this rank's
        host work for its next step) runs while the ranks' arrays are in flight."""
        if self.ring.size == 1:
            if meanwhile is not None:
                meanwhile()
            return local
        return self.put(self.ring.allreduce(np.asarray(local), meanwhile))

    def gather(self, local: Any) -> Any:
        """Every rank's array stacked by rank, as a JAX array here."""
        if self.ring.size == 1:
            return local[None]
        return self.put(self.ring.allgather(np.asarray(local)))

    def put(self, value: np.ndarray) -> Any:
        import jax

        return jax.device_put(value, self.device)


def _seed_offsets(model: Any, rank: int) -> list[Any]:
    """Non-trainable values with each dropout seed moved by ``rank``: ranks draw their own masks."""
    import jax.numpy as jnp

    values = []
    for v in model.non_trainable_variables:
        value = v.value
        if v.name == "seed_generator_state":
            value = value.at[0].add(jnp.asarray(rank * 1_000_003, value.dtype))
        values.append(value)
    return values


class _Step:
    """What both kinds of step share: a state of device arrays aligned with the model's variables.

    ``state["trainable"]`` and ``state["non_trainable"]`` follow
    ``model.trainable_variables`` and ``model.non_trainable_variables``;
    ``model`` fixes the structure the programs trace, and another network of
    the same structure (an ensemble's other members) trains with the same
    compiled programs.
    """

    def __init__(self, model: Any, collective: Collective, rank: int, optimized: list[Any]):
        import keras

        self.model, self.collective, self.rank = model, collective, rank
        self.optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        self.optimizer.build(optimized)
        self._fresh_optimizer = [np.asarray(v.value) for v in self.optimizer.variables]

    def state(self, model: Any) -> dict[str, Any]:
        """``model``'s current values as device arrays, with a fresh optimizer."""
        put = self.collective.put
        return {
            "trainable": [put(np.asarray(v.value)) for v in model.trainable_variables],
            "non_trainable": [put(np.asarray(v)) for v in _seed_offsets(model, self.rank)],
            "optimizer": [put(v) for v in self._fresh_optimizer],
        }

    def weights(self, state: dict[str, Any]) -> list[np.ndarray]:
        """The trainable values on the host (a copy)."""
        return [np.array(a) for a in state["trainable"]]

    def restore(self, state: dict[str, Any], weights: list[np.ndarray]) -> None:
        state["trainable"] = [self.collective.put(a) for a in weights]

    def assign(self, model: Any, state: dict[str, Any]) -> None:
        """Write the trained values into ``model``'s variables."""
        for variable, value in zip(model.trainable_variables, state["trainable"]):
            variable.assign(np.asarray(value))


class DenseStep(_Step):
    """The whole network on dense ``(B, W, D)`` windows: local gradient, one all-reduce, Adam."""

    def __init__(self, model: Any, learning_rate: float, collective: Collective, rank: int):
        import jax
        from jax.flatten_util import ravel_pytree

        from skol_spark.nn.network import weighted_crossentropy

        self.learning_rate = learning_rate
        super().__init__(model, collective, rank, model.trainable_variables)
        _, unravel = ravel_pytree([v.value for v in model.trainable_variables])

        def gradient(trainable, non_trainable, x, mask, y, class_weights):
            def objective(trainable):
                probs, updated = model.stateless_call(trainable, non_trainable, [x, mask], training=True)
                per_position = weighted_crossentropy(y, probs, class_weights)
                return jax.numpy.sum(per_position * mask), updated

            (total, updated), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
            count = jax.numpy.sum(mask.astype("float32"))
            flat = jax.numpy.concatenate([ravel_pytree(grads)[0], total[None], count[None]])
            return flat, updated

        def update(trainable, optimizer, reduced):
            count = jax.numpy.maximum(reduced[-1], 1.0)
            grads = unravel(reduced[:-2] / count)
            trainable, optimizer = self.optimizer.stateless_apply(optimizer, grads, trainable)
            return trainable, optimizer, checksum(trainable), reduced[-2] / count

        self.gradient = jax.jit(gradient)
        self.update = jax.jit(update, donate_argnums=(0, 1))

    @property
    def size(self) -> int:
        """Floats in each step's one all-reduce."""
        return sum(int(np.prod(v.shape)) for v in self.model.trainable_variables) + 2

    def warm_up(self, batch_shape: tuple[int, int, int], num_classes: int) -> None:
        """Compile ``gradient`` and ``update`` (run once on zeros; nothing is kept): no collective."""
        b, w, d = batch_shape
        state = self.state(self.model)
        flat, _ = self.gradient(
            state["trainable"], state["non_trainable"], np.zeros((b, w, d), np.float32), np.zeros((b, w), bool),
            np.zeros((b, w), np.int32), self.collective.put(np.ones(num_classes, np.float32)),
        )
        out = self.update(state["trainable"], state["optimizer"], flat)
        out[2].block_until_ready()

    def step(self, state: dict[str, Any], batch: tuple, class_weights: Any, clock: Any = None,
             meanwhile: Any = None) -> tuple[Any, Any]:
        """One training step on ``batch`` ``(x, mask, y)``, in place on ``state``; the new weights'
        checksum and the global mean loss (device scalars: reading them waits for the step).
        ``clock`` times the three parts; ``meanwhile`` runs during the all-reduce (``Collective.sum``)."""
        x, mask, y = batch
        flat, state["non_trainable"] = self.gradient(
            state["trainable"], state["non_trainable"], x, mask, y, class_weights
        )
        if clock is not None:
            clock.lap("compute", flat)
            meanwhile = clock.aside("next batch", meanwhile)
        reduced = self.collective.sum(flat, meanwhile)
        if clock is not None:
            clock.lap("all-reduce", reduced)
        state["trainable"], state["optimizer"], digest, loss = self.update(
            state["trainable"], state["optimizer"], reduced
        )
        if clock is not None:
            clock.lap("update", digest)
        return digest, loss


class Forward:
    """The network's forward pass for validation and the probe, jitted at one batch shape.

    For a projected network it is the numpy projection of each row once
    (:class:`~skol_spark.nn.projection.Projection`'s arithmetic, sparse rows
    with a sparse product) and the ``sequence`` model on ``(P, W, E)``
    windows, as executors predict; otherwise the whole network. Calls with
    fewer windows are padded to ``batch`` (one compiled shape).
    """

    def __init__(self, model: Any, batch: int, collective: Collective):
        import jax

        from skol_spark.nn.projection import split_network

        self.batch, self.collective = batch, collective
        split = split_network(model)
        self.projection = None
        body = model
        if split is not None:
            self.projection = _StateProjection(model, split[0])
            body = split[1]
        network_ids = {id(v): i for i, v in enumerate(model.trainable_variables)}
        self._take = [network_ids[id(v)] for v in body.trainable_variables]
        non_ids = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        self._take_non = [non_ids[id(v)] for v in body.non_trainable_variables]
        self.width = int(body.inputs[0].shape[-1])
        self.window = int(body.inputs[0].shape[1])
        self.state: dict[str, Any] | None = None

        def forward(trainable, non_trainable, x, mask):
            return body.stateless_call(trainable, non_trainable, [x, mask], training=False)[0]

        self._forward = jax.jit(forward)

    def use(self, state: dict[str, Any]) -> None:
        """Predict with these values (a step's state) from now on."""
        self.state = state
        if self.projection is not None:
            self.projection.use(state)

    def warm_up(self, state: dict[str, Any]) -> None:
        """Compile (one call on zeros with ``state``'s values)."""
        self.use(state)
        x = np.zeros((self.batch, self.window, self.width), np.float32)
        self(x, np.zeros((self.batch, self.window), bool))

    def __call__(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n = len(x)
        out = []
        for lo in range(0, n, self.batch):
            xs, ms = x[lo : lo + self.batch], mask[lo : lo + self.batch]
            pad = self.batch - len(xs)
            if pad:
                xs = np.concatenate([xs, np.zeros((pad, *xs.shape[1:]), xs.dtype)])
                ms = np.concatenate([ms, np.zeros((pad, *ms.shape[1:]), bool)])
            trainable = [self.state["trainable"][i] for i in self._take]
            non_trainable = [self.state["non_trainable"][i] for i in self._take_non]
            out.append(np.asarray(self._forward(trainable, non_trainable, xs, ms))[: len(xs) - pad])
        return np.concatenate(out) if out else np.zeros((0, self.window, 0), np.float32)


class _StateProjection:
    """The projection of a :class:`Forward`: the current kernel and bias as numpy, read on refresh."""

    def __init__(self, model: Any, layer: Any):
        ids = {id(v): i for i, v in enumerate(model.trainable_variables)}
        self._kernel = ids[id(layer.kernel)]
        self._bias = ids[id(layer.bias)] if layer.use_bias else None
        self.units = int(layer.units)
        self._state: dict[str, Any] | None = None
        self._weights: tuple[np.ndarray, np.ndarray | None] | None = None

    def use(self, state: dict[str, Any]) -> None:
        self._state, self._weights = state, None

    def refresh(self) -> None:
        self._weights = None

    def __call__(self, rows: Any) -> np.ndarray:
        from skol_spark.nn.projection import project_rows

        if self._weights is None:
            trainable = self._state["trainable"]
            bias = None if self._bias is None else np.asarray(trainable[self._bias])
            self._weights = (np.asarray(trainable[self._kernel]), bias)
        return project_rows(rows, *self._weights)
