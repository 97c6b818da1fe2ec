"""A linear-chain CRF output for the BiLSTM: marginals for inference, weighted NLL for training.

Everything is plain Keras 3 (``keras.ops``), so it runs on TensorFlow and JAX,
on the driver and on executors; Viterbi decoding is numpy.

The network's output stays a probability vector per position: :class:`CRF`
turns the BiLSTM's emission scores into the per-position **marginals**
``p(y_t = k | window)`` (forward-backward in log space). Executors therefore
treat a CRF network exactly like a softmax one (overlapping windows average
the marginals, the prediction is their argmax), and the saved network is the
inference network only. Training wraps it in :class:`CRFTrainer`, a
``keras.Model`` sharing its layers whose ``compute_loss`` is the
class-weighted negative log-likelihood of the gold label path.

Masked (padded) steps are *removed* from the chain: they enter neither the
partition function nor the transitions, which link the real step before a
masked run to the real step after it. A window with masked steps scores
exactly like the same window with those steps deleted; the marginals of
masked steps are uniform.

Class weighting. By the chain rule, ``-log p(y | x) = sum_t -log p(y_t | y_<t, x)``,
and in a linear-chain CRF ``p(y_t | y_<t, x) = p(y_t | y_s, x)`` with ``s`` the
previous real step, computed exactly from the backward messages. The loss of a
window is ``sum_t w[y_t] * (-log p(y_t | y_s, x))`` over its real steps: each
position's share of the sequence NLL, weighted by its gold class as the softmax
loss weights its cross-entropy. With all weights 1 it *is* the NLL. A batch's
loss is the sum over its windows divided by its number of real positions, the
scale of the softmax network's loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

__all__ = [
    "CRF",
    "CRFTrainer",
    "crf_conditional_log_probs",
    "crf_log_partition",
    "crf_marginals",
    "crf_marginals_numpy",
    "crf_weighted_nll",
    "emission_model",
    "viterbi_decode",
]

CRF_LAYER = "crf"
EMISSIONS_LAYER = "emissions"


def _time_major(emissions, mask):
    """(W, B, K) float emissions and (W, B) bool mask; mask defaults to all real."""
    emissions = ops.convert_to_tensor(emissions)
    if mask is None:
        mask = ops.ones(ops.shape(emissions)[:2], dtype="bool")
    mask = ops.cast(ops.convert_to_tensor(mask), "bool")
    return ops.transpose(emissions, (1, 0, 2)), ops.transpose(mask, (1, 0))


def _forward(emissions, mask, transitions, start):
    """Forward messages: alpha_t (W, B, K) at every step, and alpha of the last real step."""
    e, m = _time_major(emissions, mask)
    batch, k = ops.shape(e)[1], ops.shape(e)[2]
    init = (ops.zeros((batch, k), dtype=e.dtype), ops.zeros((batch,), dtype="bool"))

    def step(carry, inputs):
        last, seen = carry
        e_t, m_t = inputs
        moved = ops.logsumexp(last[:, :, None] + transitions[None], axis=1)
        alpha = ops.where(seen[:, None], moved, start[None]) + e_t
        last = ops.where(m_t[:, None], alpha, last)
        seen = ops.logical_or(seen, m_t)
        # Outputs share the carry's structure (TensorFlow's keras.ops.scan needs it).
        return (last, seen), (alpha, seen)

    (last, seen), (alphas, _) = ops.scan(step, init, (e, m))
    return alphas, last, seen


def _backward(emissions, mask, transitions, end):
    """Backward messages beta_t (W, B, K): log-sum over the labels of later real steps."""
    e, m = _time_major(emissions, mask)
    batch = ops.shape(e)[1]
    init = ops.broadcast_to(end[None], (batch, ops.shape(end)[0]))
    init = ops.cast(init, e.dtype)

    def step(carry, inputs):
        e_t, m_t = inputs
        beta = carry
        before = ops.logsumexp(transitions[None] + (e_t + beta)[:, None, :], axis=2)
        return ops.where(m_t[:, None], before, carry), beta

    _, betas = ops.scan(step, init, (e, m), reverse=True)
    return betas


def crf_log_partition(emissions, transitions, start, end, mask=None):
    """log Z per window, (B,): log-sum-exp of the score of every label path over real steps."""
    _, last, seen = _forward(emissions, mask, transitions, start)
    log_z = ops.logsumexp(last + end[None], axis=1)
    return ops.where(seen, log_z, ops.zeros_like(log_z))


def crf_marginals(emissions, transitions, start, end, mask=None):
    """p(y_t = k | window), (B, W, K); rows sum to 1; uniform at masked steps."""
    alphas, _, _ = _forward(emissions, mask, transitions, start)
    betas = _backward(emissions, mask, transitions, end)
    _, m = _time_major(emissions, mask)
    marginals = ops.softmax(alphas + betas, axis=-1)
    uniform = ops.ones_like(marginals) / ops.cast(ops.shape(marginals)[-1], marginals.dtype)
    return ops.transpose(ops.where(m[:, :, None], marginals, uniform), (1, 0, 2))


def _previous_labels(labels, mask):
    """(W, B) label of the previous real step (-1 before the first), time-major."""
    y, m = ops.transpose(labels, (1, 0)), ops.transpose(mask, (1, 0))

    def step(prev, inputs):
        y_t, m_t = inputs
        return ops.where(m_t, y_t, prev), prev

    init = -ops.ones(ops.shape(y)[1:], dtype=y.dtype)
    _, previous = ops.scan(step, init, (y, m))
    return previous


def crf_conditional_log_probs(emissions, labels, transitions, start, end, mask=None):
    """log p(y_t | y_s, x) for each real step t (s: the previous real step), (B, W); 0 when masked.

    They sum over a window to ``log p(y | x)`` (the chain rule).
    """
    emissions = ops.convert_to_tensor(emissions)
    labels = ops.cast(ops.convert_to_tensor(labels), "int32")
    if mask is None:
        mask = ops.ones(ops.shape(labels), dtype="bool")
    mask = ops.cast(ops.convert_to_tensor(mask), "bool")
    k = ops.shape(emissions)[-1]
    betas = ops.transpose(_backward(emissions, mask, transitions, end), (1, 0, 2))
    log_z = crf_log_partition(emissions, transitions, start, end, mask)
    previous = ops.transpose(_previous_labels(labels, mask), (1, 0))
    onehot = ops.one_hot(labels, k, dtype=emissions.dtype)
    gold = ops.sum(onehot * (emissions + betas), axis=-1)
    has_previous = previous >= 0
    prev_safe = ops.where(has_previous, previous, ops.zeros_like(previous))
    prev_onehot = ops.one_hot(prev_safe, k, dtype=emissions.dtype)
    # transitions[y_s, y_t] and beta_s[y_s]: beta_s equals the log-normalizer of the step.
    trans = ops.sum(ops.matmul(prev_onehot, transitions) * onehot, axis=-1)
    prev_beta = _beta_of_previous(betas, mask)
    prev_norm = ops.sum(prev_onehot * prev_beta, axis=-1)
    first = ops.sum(onehot * start, axis=-1) + gold - log_z[:, None]
    later = trans + gold - prev_norm
    logp = ops.where(has_previous, later, first)
    return ops.where(mask, logp, ops.zeros_like(logp))


def _beta_of_previous(betas, mask):
    """(B, W, K): beta of the previous real step, for every step (zeros before the first)."""
    b, m = ops.transpose(betas, (1, 0, 2)), ops.transpose(mask, (1, 0))

    def step(prev, inputs):
        b_t, m_t = inputs
        return ops.where(m_t[:, None], b_t, prev), prev

    _, previous = ops.scan(step, ops.zeros_like(b[0]), (b, m))
    return ops.transpose(previous, (1, 0, 2))


def crf_weighted_nll(emissions, labels, transitions, start, end, mask, class_weights):
    """Class-weighted NLL of the gold paths, per real position of the batch (see module doc)."""
    logp = crf_conditional_log_probs(emissions, labels, transitions, start, end, mask)
    weights = ops.take(ops.convert_to_tensor(class_weights, dtype=logp.dtype), ops.cast(labels, "int32"))
    real = ops.cast(mask, logp.dtype)
    total = -ops.sum(weights * logp * real)
    return total / ops.maximum(ops.sum(real), 1.0)


@keras.saving.register_keras_serializable(package="skol_spark")
class CRF(keras.layers.Layer):
    """Linear-chain CRF over a window: emission scores (B, W, K) -> marginals (B, W, K).

    Learns a (K, K) transition matrix ``transitions[i, j]`` (score of label j
    after label i) and start and end scores (K,), all initialised to zero (the
    CRF starts as a per-position softmax). Called with the window's boolean
    ``mask``; masked steps are removed from the chain (module doc).

    Examples
    --------
    >>> crf = CRF()
    >>> marginals = crf(np.zeros((2, 5, 3), "float32"), mask=np.ones((2, 5), bool))
    >>> tuple(marginals.shape)
    (2, 5, 3)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        k = int(input_shape[-1])
        self.transitions = self.add_weight(shape=(k, k), initializer="zeros", name="transitions")
        self.start = self.add_weight(shape=(k,), initializer="zeros", name="start")
        self.end = self.add_weight(shape=(k,), initializer="zeros", name="end")

    def call(self, emissions, mask=None):
        emissions = ops.cast(emissions, "float32")
        return crf_marginals(
            emissions,
            ops.cast(self.transitions, "float32"),
            ops.cast(self.start, "float32"),
            ops.cast(self.end, "float32"),
            mask,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return super().get_config()


class CRFTrainer(keras.Model):
    """Training-only wrapper of a CRF network: returns emissions, loss = weighted NLL.

    Shares every layer with ``network`` (whose output is the CRF marginals), so
    training it trains the network; only ``network`` is ever saved. ``network``
    stays reachable for callbacks that predict (``trainer.network``).
    """

    def __init__(self, network: keras.Model, class_weights: Sequence[float], **kwargs):
        super().__init__(name="skol_crf_trainer", **kwargs)
        self.emitter = emission_model(network)
        self.crf = network.get_layer(CRF_LAYER)
        self.class_weights = [float(w) for w in class_weights]
        self._network = [network]  # a list: not tracked twice as a sublayer
        self._mask_input = network.inputs[1].name  # [features, mask]

    @property
    def network(self) -> keras.Model:
        return self._network[0]

    def call(self, inputs, training=None):
        return self.emitter(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        mask = x[self._mask_input] if isinstance(x, dict) else x[1]
        loss = crf_weighted_nll(
            ops.cast(y_pred, "float32"),
            y,
            ops.cast(self.crf.transitions, "float32"),
            ops.cast(self.crf.start, "float32"),
            ops.cast(self.crf.end, "float32"),
            mask,
            self.class_weights,
        )
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return loss


def emission_model(network: keras.Model) -> keras.Model:
    """The part of a CRF network that computes emission scores (same inputs, shared layers)."""
    return keras.Model(network.inputs, network.get_layer(EMISSIONS_LAYER).output)


def crf_parameters(network: keras.Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(transitions, start, end) of a CRF network as numpy arrays."""
    crf = network.get_layer(CRF_LAYER)
    return tuple(keras.ops.convert_to_numpy(v) for v in (crf.transitions, crf.start, crf.end))


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return np.log(np.exp(x - top).sum(axis=axis)) + np.squeeze(top, axis=axis)


def crf_marginals_numpy(emissions, transitions, start, end, mask) -> np.ndarray:
    """:func:`crf_marginals` in numpy (float64): the same messages, for inference outside Keras.

    ``emissions`` (B, W, K), ``transitions`` (K, K), ``start``/``end`` (K,),
    ``mask`` (B, W) bool; returns float32 (B, W, K), uniform at masked steps.
    """
    e = np.asarray(emissions, dtype=np.float64)
    m = np.asarray(mask, bool)
    t, s, f = (np.asarray(a, np.float64) for a in (transitions, start, end))
    batch, width, k = e.shape
    scores = np.empty((batch, width, k))
    last, seen = np.zeros((batch, k)), np.zeros(batch, bool)
    for step in range(width):
        moved = _logsumexp(last[:, :, None] + t[None], axis=1)
        alpha = np.where(seen[:, None], moved, s[None]) + e[:, step]
        scores[:, step] = alpha
        last = np.where(m[:, step, None], alpha, last)
        seen |= m[:, step]
    beta = np.broadcast_to(f, (batch, k))
    for step in range(width - 1, -1, -1):
        scores[:, step] += beta
        before = _logsumexp(t[None] + (e[:, step] + beta)[:, None, :], axis=2)
        beta = np.where(m[:, step, None], before, beta)
    scores -= scores.max(axis=-1, keepdims=True)
    marginals = np.exp(scores)
    marginals /= marginals.sum(axis=-1, keepdims=True)
    marginals[~m] = 1.0 / k
    return marginals.astype(np.float32)


def viterbi_decode(emissions, transitions, start, end, mask=None) -> np.ndarray:
    """Best label path per window, (B, W) int; a masked step carries a neighbouring real label.

    numpy: ``emissions`` (B, W, K), ``transitions`` (K, K), ``start``/``end`` (K,),
    ``mask`` (B, W) bool. Masked steps are removed from the chain as in :class:`CRF`.
    """
    e = np.asarray(emissions, dtype=np.float64)
    batch, width, k = e.shape
    m = np.ones((batch, width), bool) if mask is None else np.asarray(mask, bool)
    t = np.asarray(transitions, np.float64)
    delta = np.zeros((batch, k))
    seen = np.zeros(batch, bool)
    identity = np.broadcast_to(np.arange(k), (batch, k))
    backpointers = np.empty((width, batch, k), dtype=np.int64)
    for step in range(width):
        scores = delta[:, :, None] + t[None]
        best = scores.argmax(axis=1)
        moved = np.take_along_axis(scores, best[:, None, :], axis=1)[:, 0] + e[:, step]
        first = np.asarray(start, np.float64)[None] + e[:, step]
        real, chained = m[:, step], m[:, step] & seen
        backpointers[step] = np.where(chained[:, None], best, identity)
        delta = np.where(real[:, None], np.where(seen[:, None], moved, first), delta)
        seen |= real
    path = np.empty((batch, width), dtype=np.int64)
    path[:, -1] = (delta + np.asarray(end, np.float64)[None]).argmax(axis=1)
    for step in range(width - 1, 0, -1):
        path[:, step - 1] = np.take_along_axis(backpointers[step], path[:, step : step + 1], axis=1)[:, 0]
    return path
