"""The command line's quiet output (skol_spark.cli.output), without Spark; the whole command is in test_cli.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skol_spark.cli.output import LOG4J2_PROPERTIES, Output, is_noise

ROOT = Path(__file__).resolve().parents[1]

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796490623.090028   11543 port.cc:153] oneDNN custom operations are on. You may see ...",
    "I0000 00:00:1796490623.091692   11543 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
    "W0000 00:00:1796490623.091692   11543 some/file.cc:12] a warning",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the flags.",
    "WARNING: Using incubator modules: jdk.incubator.vector",
]
KEPT = [
    "E0000 00:00:1796489518.129723   22341 cuda_platform.cc:52] an error TensorFlow reports",
    "26/12/05 16:50:31 WARN Utils: Your hostname, vm, resolves to a loopback address",
    "epoch 1/2 loss=1.0000 (3 s)",
    "python -m skol_spark: error: Input 'x' does not exist.",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_noise_is_recognised(line):
    assert is_noise(line)
    assert is_noise(line, tensorflow=False) == line.startswith("WARNING: Using incubator")  # the user's TF level


@pytest.mark.parametrize("line", KEPT)
def test_errors_warnings_and_our_lines_are_kept(line):
    assert not is_noise(line)


def test_the_quiet_session_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    conf = Output().session_conf(new_jvm=True)
    assert conf == {
        "spark.log.level": "WARN",
        "spark.ui.showConsoleProgress": "false",
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "3",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}",
    }
    assert "rootLogger.level = warn" in LOG4J2_PROPERTIES.read_text()
    assert "spark.driver.extraJavaOptions" not in Output().session_conf(new_jvm=False)  # spark-submit's JVM runs
    (tmp_path / "log4j2.properties").write_text("rootLogger.level = info\n")
    assert "spark.driver.extraJavaOptions" not in Output().session_conf(new_jvm=True)  # the user's own
    assert Output(verbose=True).session_conf(new_jvm=True) == {}


# The filter in a process of its own: fd 2 is process-wide. A child started while it is attached
# keeps writing through it after this process has its own stderr back.
_FILTERED = """
import subprocess, sys, time
from skol_spark.cli.output import Output
output = Output()
output.configure_process()
with output.starting():
    print("kept from python", file=sys.stderr, flush=True)
    child = subprocess.Popen([sys.executable, "-c", {child!r}])
print("after", file=sys.stderr, flush=True)
child.wait()
time.sleep(0.5)
"""
_CHILD = (
    "import sys, time\n"
    "sys.stderr.write('I0000 00:00:17.5   42 port.cc:153] oneDNN custom operations are on.\\n')\n"
    "sys.stderr.write('WARNING: Using incubator modules: jdk.incubator.vector\\n')\n"
    "sys.stderr.flush(); time.sleep(0.3)\n"
    "sys.stderr.write('kept from the child\\n')\n"
)


def test_the_filter_drops_noise_from_this_process_and_its_children_and_keeps_the_rest(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _FILTERED.format(child=_CHILD)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    # Lines through the filter reach stderr from its copying thread, so they may come after "after".
    assert sorted(done.stderr.splitlines()) == ["after", "kept from python", "kept from the child"]


@pytest.mark.parametrize(
    "verbose, given, expected",
    [(False, None, "3 WARNING False"), (False, "0", "0 WARNING False"), (True, None, "None INFO True")],
    ids=["quiet", "the-users-level", "verbose"],
)
def test_tensorflows_level_is_set_only_when_quiet_and_not_the_users(tmp_path, verbose, given, expected):
    script = (
        "import logging, os\n"
        "from skol_spark.cli.output import Output\n"
        f"output = Output(verbose={verbose})\n"
        "output.configure_process()\n"
        "with output.starting():\n    pass\n"
        "level = logging.getLevelName(logging.getLogger('skol_spark').getEffectiveLevel())\n"
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), level, output._filter is None)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update({"PYTHONPATH": str(ROOT), **({"TF_CPP_MIN_LOG_LEVEL": given} if given else {})})
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.stdout.strip() == expected, done.stderr
