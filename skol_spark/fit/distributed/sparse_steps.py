"""Data-parallel steps on sparse rows: the projection's gradient is row-sparse, and so is its update.

A projected network (:func:`skol_spark.nn.projection.split_network`) on
sparse rows never makes ``(B, W, D)`` windows. A batch holds its distinct
rows once as COO values over the columns they use (the driver fit's
:func:`~skol_spark.fit.sparse_training.row_sparse_batch`), padded to shapes
fixed for the whole fit so that each program compiles once:

1. ``project``: the used kernel rows ``kernel[columns]`` ``(C, E)``, the
   rows' projections (a segment sum) and their windows ``(B, W, E)``;
2. ``gradient``: the ``sequence`` model's loss gradient on those windows,
   and the gradient with respect to the windows (it compiles before any row
   has arrived: its shapes do not depend on the data);
3. ``project_gradient``: the gradient of the used kernel rows ``(C, E)``
   and of the bias, from the windows' gradient (the projection is linear);
4. one all-reduce of ``[sequence and bias gradients, loss sum, count]`` and
   the kernel rows' gradient, exchanged one of two ways, whichever moves
   fewer floats (``choose_exchange``): ``"gather"`` all-gathers every rank's
   ``(C, E + 1)`` used rows (their column ids ride in the last column, as
   float32),
   ``"dense"`` scatters them into ``(D, E)`` and all-reduces that with the
   rest; all ranks add up the same rows either way. A single rank
   (``"local"``, the driver fit on JAX) exchanges nothing;
5. ``update``: Adam on the sequence and bias, and a lazy Adam on the kernel
   rows some rank used (others keep their moments), as the driver fit's
   :class:`~skol_spark.fit.sparse_training.LazyAdam` does. A single rank's
   used columns are distinct by construction, so its lazy Adam indexes
   them directly; gathered rows of several ranks are merged first.

A batch is padded to the smallest of a few sizes that holds it, so that the
typical batch does not pay for the largest: quantiles of the values and
columns of a sample of random batches (``typical_sizes``), then the bound.
Each program compiles once per size. All-gathered kernel rows keep one
column count, the same on every rank.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from skol_spark.fit.distributed.steps import Collective, _Step, checksum

__all__ = ["RowSparseStep", "choose_exchange", "sparse_bounds", "typical_sizes"]

# Padded sizes are rounded up to a multiple of this.
_ROUND = 256
# The padded sizes of a fit's batches: these quantiles of a sample of random batches, then the bound.
_QUANTILES = (0.5, 0.9, 1.0)
_SAMPLE_BATCHES = 64


def _round_up(n: int) -> int:
    return max(_ROUND, _ROUND * math.ceil(n / _ROUND))


def sparse_bounds(data: Any, starts: np.ndarray, lengths: np.ndarray, batch: int) -> tuple[int, int]:
    """Upper bounds on a batch's stored values and used columns, whatever windows it holds.

    The ``batch`` windows with the most stored values (and, separately, the
    most distinct columns) bound any batch of them; rounded up, so that this
    rank's shapes stay fixed for the fit.
    """
    if not len(starts):
        return _ROUND, _ROUND
    from skol_spark.core.windows import window_rows

    features = data.features
    mask, rows = window_rows(starts, lengths, int(lengths.max()))
    window_of = np.repeat(np.arange(len(starts)), mask.sum(axis=1))
    counts, at = features.value_positions(features.order[rows[mask]])
    value_window = np.repeat(window_of, counts)
    values = np.bincount(value_window, minlength=len(starts))
    pairs = np.unique(value_window * np.int64(features.width) + features.csr[1][at])
    columns = np.bincount(pairs // features.width, minlength=len(starts))
    top = min(batch, len(starts))
    most_values = int(np.sort(values)[-top:].sum())
    most_columns = min(int(np.sort(columns)[-top:].sum()), features.width)
    return _round_up(most_values), _round_up(most_columns)


def typical_sizes(
    data: Any, starts: np.ndarray, lengths: np.ndarray, batch: int, seed: int = 0
) -> list[tuple[int, int]]:
    """Padded sizes (values, columns) that most batches of ``batch`` random windows fit: the
    ``_QUANTILES`` of a sample of such batches, rounded up (the bound catches the rest)."""
    from skol_spark.core.windows import window_rows
    from skol_spark.fit.sparse_training import row_sparse_batch

    if not len(starts):
        return []
    rng = np.random.default_rng(seed)
    sizes = []
    for _ in range(_SAMPLE_BATCHES):
        pick = rng.choice(len(starts), size=min(batch, len(starts)), replace=False)
        mask, rows = window_rows(starts[pick], lengths[pick], int(lengths[pick].max()))
        b = row_sparse_batch(data, rows, mask)
        sizes.append((len(b.values), len(b.columns)))
    values, columns = np.array(sizes).T
    return [(_round_up(np.quantile(values, q)), _round_up(np.quantile(columns, q))) for q in _QUANTILES]


def choose_exchange(ranks: int, columns: int, width: int, units: int) -> str:
    """``"local"`` for a single rank; ``"gather"`` when all-gathering every rank's used kernel rows moves
    fewer floats than a ring all-reduce of the whole ``(width, units)`` kernel gradient (2 (N - 1) / N of
    it), else ``"dense"``. Column ids travel as float32, exact below 2^24 columns."""
    if ranks == 1:
        return "local"
    gathered = (ranks - 1) * columns * (units + 1)
    ring = 2 * (ranks - 1) * width * units / max(1, ranks)
    return "gather" if gathered < ring and width < 2**24 else "dense"


class RowSparseStep(_Step):
    """A projected network on sparse rows (see the module docstring)."""

    def __init__(self, model: Any, learning_rate: float, collective: Collective, rank: int, window: int,
                 batch: int):
        import jax

        from skol_spark.nn.projection import split_network

        projection, sequence = split_network(model)
        trainable = model.trainable_variables
        at = {id(v): i for i, v in enumerate(trainable)}
        self.kernel_at = at[id(projection.kernel)]
        self.bias_at = at[id(projection.bias)]
        self.sequence_at = [at[id(v)] for v in sequence.trainable_variables]
        self.rest_at = [i for i in range(len(trainable)) if i != self.kernel_at]  # Adam's variables
        non = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        self.sequence_non_at = [non[id(v)] for v in sequence.non_trainable_variables]
        self.learning_rate = learning_rate
        super().__init__(model, collective, rank, [trainable[i] for i in self.rest_at])
        self.width, self.units = (int(d) for d in projection.kernel.shape)
        self.window, self.batch = window, batch
        self.bounds: tuple[int, int] | None = None
        self.exchange = "gather"
        self._sequence_grad = jax.jit(self._sequence_gradient(sequence))
        self._project = jax.jit(self._projection, static_argnums=(0,))
        self._project_grad = jax.jit(self._projection_gradient, static_argnums=(0, 1))
        self._update = None
        self._checksum = jax.jit(checksum)

    # --- the programs -------------------------------------------------------------------------

    def _sequence_gradient(self, sequence: Any) -> Any:
        import jax
        from jax.flatten_util import ravel_pytree

        from skol_spark.nn.network import weighted_crossentropy

        def gradient(trainable, non_trainable, windows, mask, y, class_weights):
            def objective(trainable, windows):
                probs, updated = sequence.stateless_call(trainable, non_trainable, [windows, mask], training=True)
                return jax.numpy.sum(weighted_crossentropy(y, probs, class_weights) * mask), updated

            (total, updated), (grads, d_windows) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(
                trainable, windows
            )
            count = jax.numpy.sum(mask.astype("float32"))
            return jax.numpy.concatenate([ravel_pytree(grads)[0], total[None], count[None]]), d_windows, updated

        return gradient

    @staticmethod
    def _projection(rows, kernel, bias, columns, values, at_row, at_column, index):
        import jax

        used = kernel.at[columns].get(mode="fill", fill_value=0.0)
        projected = jax.ops.segment_sum(values[:, None] * used[at_column], at_row, num_segments=rows) + bias
        return projected[index]

    @staticmethod
    def _projection_gradient(rows, columns, values, at_row, at_column, index, d_windows):
        import jax

        units = d_windows.shape[-1]
        d_projected = jax.numpy.zeros((rows, units), d_windows.dtype).at[index].add(d_windows)
        d_used = jax.ops.segment_sum(values[:, None] * d_projected[at_row], at_column, num_segments=columns)
        return d_used, jax.numpy.sum(d_projected, axis=0)

    def _make_update(self) -> Any:
        """The exchange and the update, for the fit's ``bounds`` and ``exchange``."""
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        collective, exchange = self.collective, self.exchange
        width, units = self.width, self.units
        trainable = self.model.trainable_variables
        _, unravel_sequence = ravel_pytree([trainable[i].value for i in self.sequence_at])
        rest_at, kernel_at, bias_at, sequence_at = self.rest_at, self.kernel_at, self.bias_at, self.sequence_at
        optimizer = self.optimizer
        beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
        epsilon, rate = float(optimizer.epsilon), float(self.learning_rate)

        def local(flat, d_bias, columns, d_used):
            dense = jnp.concatenate([flat[:-2], d_bias, flat[-2:]])
            if exchange == "local":
                return dense, d_used
            if exchange == "dense":
                kernel = jnp.zeros((width, units), d_used.dtype).at[columns].add(d_used, mode="drop")
                return jnp.concatenate([kernel.ravel(), dense]), None
            rows = jnp.concatenate([d_used, columns.astype(jnp.float32)[:, None]], axis=1)  # exact below 2^24
            return dense, rows

        def update(trainable_values, optimizer_values, moments, reduced, gathered, columns):
            count = jnp.maximum(reduced[-1], 1.0)
            if exchange == "dense":
                kernel_grad = reduced[: width * units].reshape(width, units) / count
                reduced = reduced[width * units :]
            n_sequence = reduced.shape[0] - units - 2
            grads = {i: g for i, g in zip(sequence_at, unravel_sequence(reduced[:n_sequence] / count))}
            grads[bias_at] = reduced[n_sequence : n_sequence + units] / count
            rest = [trainable_values[i] for i in rest_at]
            rest, optimizer_values = optimizer.stateless_apply(optimizer_values, [grads[i] for i in rest_at], rest)
            step = optimizer_values[0].astype(jnp.float32)  # Adam's iterations, already counted
            alpha = rate * jnp.sqrt(1 - beta_2**step) / (1 - beta_1**step)
            kernel, (m, v) = trainable_values[kernel_at], moments
            if exchange == "dense":
                touched = jnp.any(kernel_grad != 0, axis=1, keepdims=True)
                m = jnp.where(touched, beta_1 * m + (1 - beta_1) * kernel_grad, m)
                v = jnp.where(touched, beta_2 * v + (1 - beta_2) * kernel_grad**2, v)
                kernel = jnp.where(touched, kernel - alpha * m / (jnp.sqrt(v) + epsilon), kernel)
                changed = [kernel]
            else:
                if exchange == "local":  # this rank's columns: distinct, padded with `width` (dropped)
                    rows, g = columns, gathered / count
                else:
                    flat = gathered.reshape(-1, units + 1)
                    ids = flat[:, -1].astype(jnp.int32)
                    rows, inverse = jnp.unique(ids, size=len(ids), fill_value=width, return_inverse=True)
                    g = jax.ops.segment_sum(flat[:, :-1], inverse.ravel(), num_segments=len(ids)) / count
                m_rows = beta_1 * m.at[rows].get(mode="fill", fill_value=0.0) + (1 - beta_1) * g
                v_rows = beta_2 * v.at[rows].get(mode="fill", fill_value=0.0) + (1 - beta_2) * g**2
                kernel = kernel.at[rows].add(-alpha * m_rows / (jnp.sqrt(v_rows) + epsilon), mode="drop")
                m, v = m.at[rows].set(m_rows, mode="drop"), v.at[rows].set(v_rows, mode="drop")
                changed = [kernel.at[rows].get(mode="fill", fill_value=0.0)]  # what this step changed
            out = list(trainable_values)
            for i, value in zip(rest_at, rest):
                out[i] = value
            out[kernel_at] = kernel
            digest = checksum(rest + changed) if exchange != "local" else jnp.uint32(0)  # no rank to agree with
            return out, optimizer_values, (m, v), digest, reduced[-2] / count

        if exchange == "local":
            def collect(dense_local, rows_local, meanwhile):
                if meanwhile is not None:
                    meanwhile()
                return dense_local, rows_local
        elif exchange == "dense":
            def collect(dense_local, rows_local, meanwhile):
                return collective.sum(dense_local, meanwhile), None
        else:
            def collect(dense_local, rows_local, meanwhile):
                return collective.sum(dense_local, meanwhile), collective.gather(rows_local)
        self._local, self._collect = jax.jit(local), collect
        return jax.jit(update, donate_argnums=(0, 1, 2))

    # --- the step -------------------------------------------------------------------------------

    def configure(self, bounds: tuple[int, int], exchange: str, typical: list[tuple[int, int]] = ()) -> None:
        """Fix the padded values and columns of the fit's batches (``bounds``: the largest; ``typical``:
        smaller sizes most batches fit, from :func:`typical_sizes`), and how the kernel rows are exchanged."""
        self.bounds, self.exchange = bounds, exchange
        self.sizes = sorted({
            (min(v, bounds[0]), bounds[1] if exchange == "gather" else min(c, bounds[1]))
            for v, c in [*typical, bounds]
        })
        self._update = self._make_update()

    @property
    def size(self) -> int:
        """Floats all-reduced each step (the all-gathered rows not counted)."""
        rest = sum(int(np.prod(self.model.trainable_variables[i].shape)) for i in self.rest_at) + 2
        return rest + (self.width * self.units if self.exchange == "dense" else 0)

    def state(self, model: Any) -> dict[str, Any]:
        state = super().state(model)
        zeros = np.zeros((self.width, self.units), np.float32)
        state["moments"] = (self.collective.put(zeros), self.collective.put(zeros))
        return state

    def pack(self, data: Any, rows: np.ndarray, mask: np.ndarray) -> tuple:
        """A batch's arrays at the fit's padded shapes (:func:`row_sparse_batch`, padded)."""
        from skol_spark.fit.sparse_training import row_sparse_batch

        b = row_sparse_batch(data, rows, mask)
        fits = [s for s in self.sizes if len(b.values) <= s[0] and len(b.columns) <= s[1]]
        if not fits:
            raise ValueError(f"a batch exceeds its bounds ({len(b.values)}, {len(b.columns)}) > {self.bounds}")
        values_cap, columns_cap = fits[0]
        pad_values, pad_columns = values_cap - len(b.values), columns_cap - len(b.columns)
        return (
            np.concatenate([b.columns.astype(np.int32), np.full(pad_columns, self.width, np.int32)]),
            np.concatenate([b.values, np.zeros(pad_values, np.float32)]),
            np.concatenate([b.at_row.astype(np.int32), np.zeros(pad_values, np.int32)]),
            np.concatenate([b.at_column.astype(np.int32), np.zeros(pad_values, np.int32)]),
            b.index,
        )

    def warm_up(self, num_classes: int) -> None:
        """Compile the sequence gradient (its shapes do not depend on the rows): no collective."""
        state = self.state(self.model)
        b, w = self.batch, self.window
        windows = np.zeros((b, w, self.units), np.float32)
        trainable = [state["trainable"][i] for i in self.sequence_at]
        non_trainable = [state["non_trainable"][i] for i in self.sequence_non_at]
        self._sequence_grad(
            trainable, non_trainable, windows, np.zeros((b, w), bool), np.zeros((b, w), np.int32),
            self.collective.put(np.ones(num_classes, np.float32)),
        )[0].block_until_ready()

    def step(self, state: dict[str, Any], batch: tuple, class_weights: Any, clock: Any = None,
             meanwhile: Any = None) -> tuple[Any, Any]:
        """One step on ``batch`` ``((columns, values, at_row, at_column, index), mask, y)``; ``meanwhile``
        runs during the exchange."""
        packed, mask, y = batch
        trainable, non_trainable = state["trainable"], state["non_trainable"]
        columns, values, at_row, at_column, index = packed
        rows = self.batch * self.window
        windows = self._project(rows, trainable[self.kernel_at], trainable[self.bias_at], columns, values,
                                at_row, at_column, index)
        flat, d_windows, updated = self._sequence_grad(
            [trainable[i] for i in self.sequence_at], [non_trainable[i] for i in self.sequence_non_at],
            windows, mask, y, class_weights,
        )
        for i, value in zip(self.sequence_non_at, updated):
            non_trainable[i] = value
        d_used, d_bias = self._project_grad(rows, len(columns), values, at_row, at_column, index, d_windows)
        dense_local, rows_local = self._local(flat, d_bias, columns, d_used)
        if clock is not None:
            clock.lap("compute", dense_local)
            meanwhile = clock.aside("next batch", meanwhile)
        reduced, gathered = self._collect(dense_local, rows_local, meanwhile)
        if clock is not None:
            clock.lap("all-reduce", reduced)
        state["trainable"], state["optimizer"], state["moments"], digest, loss = self._update(
            trainable, state["optimizer"], state["moments"], reduced, gathered, columns
        )
        if clock is not None:
            clock.lap("update", digest)
        return digest, loss
