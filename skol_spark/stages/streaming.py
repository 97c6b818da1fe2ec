"""Labeling a Structured Streaming query one micro-batch at a time.

``transform`` sorts each document's rows by position, which a streaming
DataFrame cannot do, so a stream is labeled in ``writeStream.foreachBatch``,
where each micro-batch is a batch DataFrame. That is right when every document
arrives whole in one micro-batch (a file source whose files each hold whole
documents). :class:`CompleteDocumentsLabeler` is a ``foreachBatch`` function
for streams whose documents arrive in pieces: it holds a document's rows back,
in Parquet, until the row marking its end has arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

__all__ = ["ARRIVED_COL", "CompleteDocumentsLabeler"]

logger = logging.getLogger("skol_spark")

# Kept with each pending row: the micro-batch it arrived in.
ARRIVED_COL = "_skol_spark_arrived"
_DUE = "_skol_spark_due"


class CompleteDocumentsLabeler:
    """A ``foreachBatch`` function that labels each document once its end row has arrived.

    Each micro-batch's rows join the rows still pending from earlier ones.
    Documents whose end row (``endCol`` true) is among them are labeled with
    ``model.transform`` and handed to ``sink``; the other rows are written to
    ``statePath`` for the next micro-batch. A replayed micro-batch (same
    ``batch_id``, after a failure) reads the same pending rows and gives
    ``sink`` the same rows again, so ``sink`` should be idempotent per
    ``batch_id``, as every ``foreachBatch`` sink should.

    Parameters
    ----------
    model : Transformer
        A ``BiLSTMClassificationModel``, or a ``PipelineModel`` ending in one.
    sink : callable
        ``sink(labeled, batch_id)``: called once per micro-batch with the rows of
        the documents completed in it, e.g. an append to a table.
    statePath : str
        A directory for this query's pending rows alone (two Parquet slots,
        ``slot-0`` and ``slot-1``), kept as long as the query's checkpoint: a
        restarted query resumes from both.
    endCol : str
        A boolean column, true on a document's last row. Rows arriving after
        their document's end row would start a new document.
    docIdCol : str, optional
        The document column; by default the model's ``docIdCol``.
    maxWaitBatches : int, optional
        A document still without its end row this many micro-batches after its
        first row arrived is labeled as it is, with a warning, instead of
        waiting forever. Micro-batches run only when rows arrive.

    Examples
    --------
    >>> def append(labeled, batch_id):
    ...     labeled.write.mode("append").saveAsTable("labeled")
    >>> labeler = CompleteDocumentsLabeler(
    ...     model, append, statePath="/chk/labeling-pending", endCol="is_last")  # doctest: +SKIP
    >>> stream.writeStream.foreachBatch(labeler).option(
    ...     "checkpointLocation", "/chk/labeling").start()                       # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        sink: Callable[[DataFrame, int], Any],
        statePath: str,
        endCol: str,
        docIdCol: str | None = None,
        maxWaitBatches: int | None = None,
    ) -> None:
        if not statePath:
            raise ValueError("Expected statePath, a directory for pending rows. Received: an empty path.")
        if maxWaitBatches is not None and (not isinstance(maxWaitBatches, int) or maxWaitBatches < 1):
            raise ValueError(
                f"Expected maxWaitBatches to be a whole number >= 1, or None to wait for every end row. "
                f"Received: {maxWaitBatches!r}."
            )
        if docIdCol is None:
            if not hasattr(model, "getDocIdCol"):
                raise ValueError(
                    f"Expected docIdCol: {type(model).__name__} has no docIdCol Param to take it from."
                )
            docIdCol = model.getDocIdCol()
        self.model = model
        self.sink = sink
        self.statePath = statePath.rstrip("/")
        self.endCol = endCol
        self.docIdCol = docIdCol
        self.maxWaitBatches = maxWaitBatches

    def slot(self, batch_id: int) -> str:
        """Where the rows still pending after micro-batch ``batch_id`` are kept."""
        return f"{self.statePath}/slot-{batch_id % 2}"

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self._check_columns(batch)
        rows = batch.withColumn(ARRIVED_COL, F.lit(batch_id).cast("long"))
        pending = self._pending_before(batch, batch_id)
        if pending is not None:
            rows = pending.unionByName(rows)
        doc = F.col(f"`{self.docIdCol}`")
        by_doc = Window.partitionBy(doc)
        ended = F.coalesce(F.col(f"`{self.endCol}`"), F.lit(False)).cast("int")
        due = F.max(ended).over(by_doc) == 1
        if self.maxWaitBatches is not None:
            due = due | (F.min(ARRIVED_COL).over(by_doc) <= batch_id - self.maxWaitBatches)
        # A row without a document is labeled now: the model's handleInvalid decides what becomes of it.
        tagged = rows.withColumn(_DUE, doc.isNull() | due).persist()
        try:
            # Written before the sink runs: a replay of this micro-batch reads the slot of the one
            # before, which this write leaves alone.
            tagged.where(~F.col(_DUE)).drop(_DUE).write.mode("overwrite").parquet(self.slot(batch_id))
            self._log(tagged, ended, batch_id)
            complete = tagged.where(F.col(_DUE)).drop(_DUE, ARRIVED_COL)
            self.sink(self.model.transform(complete), batch_id)
        finally:
            tagged.unpersist()

    def _check_columns(self, batch: DataFrame) -> None:
        fields = {f.name: f.dataType for f in batch.schema.fields}
        for param, name in (("docIdCol", self.docIdCol), ("endCol", self.endCol)):
            if name not in fields:
                raise ValueError(
                    f"Column {name!r} ({param}) is missing from the micro-batch. "
                    f"Received columns: {sorted(fields)}. Add it or pass {param}=."
                )
        if not isinstance(fields[self.endCol], T.BooleanType):
            raise ValueError(
                f"Column {self.endCol!r} (endCol) must be boolean, true on a document's last row. "
                f"Received: {fields[self.endCol].simpleString()}."
            )

    def _pending_before(self, batch: DataFrame, batch_id: int) -> DataFrame | None:
        """The rows pending after micro-batch ``batch_id - 1``; None before the first."""
        if batch_id == 0:
            return None
        path = self.slot(batch_id - 1)
        try:
            pending = batch.sparkSession.read.parquet(path)
            pending.schema  # noqa: B018 - Spark Connect reads lazily; a missing path raises here
        except Exception as error:
            if "PATH_NOT_FOUND" not in str(error):
                raise
            logger.warning(
                "skol_spark: no pending rows at %s for micro-batch %d (a new statePath for a running "
                "query?); starting with none.", path, batch_id - 1,
            )
            return None
        return pending

    def _log(self, tagged: DataFrame, ended: Any, batch_id: int) -> None:
        """One INFO line per micro-batch; a WARNING naming documents labeled without their end row."""
        doc = F.col(f"`{self.docIdCol}`")
        docs = tagged.where(doc.isNotNull()).groupBy(doc.alias("doc")).agg(
            F.max(_DUE).alias("due"), F.max(ended).alias("ended"), F.count(F.lit(1)).alias("rows")
        )
        counts = docs.groupBy("due", "ended").agg(
            F.count(F.lit(1)).alias("docs"), F.sum("rows").alias("rows"),
            F.slice(F.collect_list(F.col("doc").cast("string")), 1, 5).alias("examples"),
        ).collect()
        labeled = sum(r.docs for r in counts if r.due)
        pending = [r for r in counts if not r.due]
        logger.info(
            "skol_spark: micro-batch %d: %d documents labeled, %d rows of %d documents pending.",
            batch_id, labeled, sum(r.rows for r in pending), sum(r.docs for r in pending),
        )
        for r in counts:
            if r.due and not r.ended:
                logger.warning(
                    "skol_spark: micro-batch %d: %d documents labeled without their end row after "
                    "waiting %d micro-batches (maxWaitBatches), e.g. %s.",
                    batch_id, r.docs, self.maxWaitBatches, r.examples,
                )
