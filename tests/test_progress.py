"""Training progress without any logging set-up (skol_spark.fit.progress and the verbose Param)."""

from __future__ import annotations

import io
import logging
import re

from skol_spark.fit.progress import FitProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_single_network_writes_a_start_line_and_one_line_per_epoch_and_logs_them(caplog):
    stream = io.StringIO()
    progress = FitProgress(True, 2, 1, stream=stream)
    with caplog.at_level(logging.INFO, logger="skol_spark.progress"):
        progress.start("40 rows x 8 features, 3 classes, on the driver")
        progress.epoch(0, {"loss": 1.5, "val_macro_f1": 0.5})
        progress.epoch(1, {"loss": 1.0})
        progress.network_done(0, {"loss": [1.5, 1.0]})  # one network: nothing more to say
    lines = stream.getvalue().splitlines()
    assert lines[0] == "training 1 network, 2 epochs, on 40 rows x 8 features, 3 classes, on the driver"
    assert re.fullmatch(r"epoch 1/2 loss=1\.5000 val_macro_f1=0\.5000 \(\d+ s\)", lines[1]), lines
    assert re.fullmatch(r"epoch 2/2 loss=1\.0000 \(\d+ s\)", lines[2]) and len(lines) == 3, lines
    messages = [r.getMessage() for r in caplog.records if r.name == "skol_spark.progress"]
    assert messages[1:] == ["epoch 1/2 loss=1.5000 val_macro_f1=0.5000", "epoch 2/2 loss=1.0000"]


def _ensemble(stream) -> None:
    progress = FitProgress(True, 2, 2, stream=stream)
    progress.start("rows")
    for member in range(2):
        for epoch in range(2):
            progress.epoch(epoch, {"loss": 1.0 - 0.1 * epoch, "val_macro_f1": 0.5 + 0.1 * epoch}, network=member)
        progress.network_done(member, {"loss": [1.0, 0.9], "val_macro_f1": [0.5, 0.6]})


def test_an_ensemble_writes_one_line_per_network_not_one_per_epoch():
    stream = io.StringIO()
    _ensemble(stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "training an ensemble of 2 networks, 2 epochs, on rows"
    assert [re.sub(r" \(\d+ s\)$", "", line) for line in lines[1:]] == [
        f"network {m}/2: 2 epochs, loss 1.0000 -> 0.9000, val_macro_f1 0.6000 (best 0.6000 at epoch 2)"
        for m in (1, 2)
    ]
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_the_current_epoch_is_rewritten_in_place():
    stream = _Terminal()
    _ensemble(stream)
    text = stream.getvalue()
    assert "\rnetwork 1/2 epoch 2/2 loss=0.9000 val_macro_f1=0.6000" in text
    finished = [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line]
    assert [line.split(":")[0] for line in finished] == ["training an ensemble of 2 networks, 2 epochs, on rows",
                                                         "network 1/2", "network 2/2"]


def test_verbose_false_writes_nothing_and_still_logs(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="skol_spark.progress"):
        progress = FitProgress(False, 1, 1, stream=stream)
        progress.start("rows")
        progress.epoch(0, {"loss": 1.0})
    assert stream.getvalue() == ""
    assert [r.getMessage() for r in caplog.records if r.name == "skol_spark.progress"][-1] == "epoch 1/1 loss=1.0000"


def test_fit_shows_progress_on_stderr_without_logging_set_up(train_df, tiny_params, capsys):
    from skol_spark import BiLSTMClassifier

    assert BiLSTMClassifier().getVerbose() is True
    model = BiLSTMClassifier(**{**tiny_params, "epochs": 2, "ensembleSize": 2}).fit(train_df)
    lines = capsys.readouterr().err.splitlines()
    ours = [line for line in lines if line.startswith(("training ", "network ", "epoch "))]
    assert ours[0].startswith("training an ensemble of 2 networks, 2 epochs, on ") and "3 classes" in ours[0]
    assert [line.split(":")[0] for line in ours[1:]] == ["network 1/2", "network 2/2"]
    assert model.getVerbose() is True
