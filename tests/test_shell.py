"""The command runner: exit codes, streams, streaming order, timeouts, missing programs."""

import io
import sys
import threading
import time

import pytest

from labkit._core import runner

pytestmark = pytest.mark.fast

PY = sys.executable


def run(cmd, **kw):
    out = io.StringIO()
    return runner.run(cmd, out=out, **kw), out.getvalue()


def test_success_and_transcript():
    res, shown = run([PY, "-c", "print('hello')"])
    assert res.ok and res.returncode == 0 and res.stdout == "hello\n" and res.stderr == ""
    assert shown.splitlines()[1] == "hello"
    assert shown.startswith("$ ") and res.transcript().endswith("hello\n")


def test_exit_code_and_stderr_are_kept_apart():
    res, shown = run([PY, "-c", "import sys; print('out'); sys.stderr.write('err\\n'); sys.exit(3)"])
    assert res.returncode == 3 and not res.ok
    assert res.stdout == "out\n" and res.stderr == "err\n"
    assert "[exit 3]" in shown and "[exit 3]" in res.transcript()


def test_string_commands_split_without_a_shell():
    res, _ = run("printf '%s|%s' a b")
    assert res.argv[0] == "printf" and res.stdout == "a|b"


def test_pipelines_run_through_bash_explicitly():
    res, shown = run("printf 'b\\na\\n' | sort")
    assert res.argv[:2] == ["bash", "-c"] and res.stdout == "a\nb\n"
    assert shown.startswith("$ printf 'b\\na\\n' | sort\n")
    assert runner.needs_shell("cat /etc/os-release | head -2")
    assert not runner.needs_shell("docker model ls")


def test_missing_executable_is_one_line():
    res, shown = run(["sbx", "ls"], env={"PATH": "/nonexistent"})
    assert res.returncode == runner.MISSING_EXIT and not res.ok
    assert res.error and "sbx: command not found" in res.error and "LABKIT_MODE=embedded" in res.error
    assert "Traceback" not in shown and shown.count("\n") == 2


def test_missing_program_inside_a_pipeline():
    res, _ = run("no-such-tool-xyz --help | cat")
    assert res.error and "no-such-tool-xyz: command not found" in res.error


def test_timeout_stops_the_whole_process_group():
    t0 = time.monotonic()
    res, shown = run("sleep 30 & sleep 30; echo never", timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert res.timed_out and res.returncode == runner.TIMEOUT_EXIT
    assert "timed out after 0.5 s" in shown and "never" not in res.stdout


def test_output_streams_as_it_arrives(tmp_path):
    """The first line reaches the sink while the command still waits for us to go on."""
    seen: list[str] = []

    class Sink(io.StringIO):
        def write(self, s):
            seen.append(s)
            return super().write(s)

    gate = tmp_path / "go"
    code = (f"import os, time\nprint('first', flush=True)\n"
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\nprint('second')")
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(r=runner.run([PY, "-c", code], out=Sink(), timeout=20)))
    worker.start()
    deadline = time.monotonic() + 10
    while not any("first" in s for s in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    streamed_early = any("first" in s for s in seen) and worker.is_alive()
    gate.touch()
    worker.join(20)
    assert streamed_early, "the first line did not stream before the command ended"
    assert result["r"].stdout == "first\nsecond\n"


def test_interleaving_order_is_kept():
    code = ("import sys\nfor i in range(3):\n    sys.stdout.write(f'o{i}\\n'); sys.stdout.flush()\n"
            "    sys.stderr.write(f'e{i}\\n'); sys.stderr.flush()\n    import time; time.sleep(0.05)\n")
    res, _ = run([PY, "-c", code])
    assert [t.strip() for _, t in res.chunks] == ["o0", "e0", "o1", "e1", "o2", "e2"]
    assert res.output == "o0\ne0\no1\ne1\no2\ne2\n"


def test_long_output_is_cut_with_a_visible_note():
    res, shown = run([PY, "-c", "for i in range(500): print(f'line {i}')"], max_lines=30)
    assert len(res.stdout.splitlines()) == 500
    assert "line 0\n" in shown and "line 499\n" in shown and "line 250\n" not in shown
    assert "470 more lines not shown" in shown
    assert "more lines not shown" in res.transcript(max_lines=30)


def test_input_is_fed_to_stdin():
    res, _ = run(["cat"], input="abc")
    assert res.stdout == "abc"


def test_display_text_replaces_the_argv():
    res, shown = run([PY, "-c", "print(1)"], display="docker model ls")
    assert shown.startswith("$ docker model ls\n") and res.command == "docker model ls"


def test_check_raises_one_clear_line():
    res, _ = run([PY, "-c", "raise SystemExit(2)"])
    with pytest.raises(runner.CommandFailed, match="failed: exit 2"):
        res.check()


def test_utf8_split_across_reads_is_decoded():
    res, _ = run([PY, "-c", "import sys; sys.stdout.buffer.write('✓ ok'.encode()); sys.stdout.flush()"])
    assert res.stdout == "✓ ok"


def test_a_missing_working_folder_is_named_not_blamed_on_the_program(tmp_path):
    missing = tmp_path / "not-made-yet"
    out = io.StringIO()
    result = runner.run(["ls"], cwd=str(missing), out=out)
    assert not result.ok and result.error == f"the folder {missing} does not exist — create it: mkdir -p {missing}"
    assert "cannot run" not in out.getvalue() and "ls:" not in result.error


def test_progress_lines_share_one_line_on_screen_but_all_stay_in_the_output() -> None:
    code = ("print('pulling'); [print(f'Downloaded {i}MB of 3MB', flush=True) for i in range(1, 4)]; "
            "print('Model pulled successfully')")
    out = io.StringIO()
    result = runner.run([sys.executable, "-c", code], out=out)
    assert out.getvalue().split("\n", 1)[1] == ("pulling\nDownloaded 1MB of 3MB\rDownloaded 2MB of 3MB\r"
                                                "Downloaded 3MB of 3MB\nModel pulled successfully\n")
    assert result.stdout.count("Downloaded") == 3


def test_a_table_row_with_numbers_is_not_taken_for_progress() -> None:
    out = io.StringIO()
    runner.run([sys.executable, "-c", "print('ai/smollm2  135M  Q4_1'); print('ai/other  360M  Q4_K_M')"], out=out)
    assert out.getvalue().split("\n", 1)[1] == "ai/smollm2  135M  Q4_1\nai/other  360M  Q4_K_M\n"


def test_progress_lines_cut_anywhere_by_the_pipe_still_share_one_line() -> None:
    code = ("import sys, time\nfor i in (1, 2):\n    for part in ('Down', f'loaded {i}MB of 2MB', '\\n'):\n"
            "        sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.02)\nprint('done')")
    out = io.StringIO()
    runner.run([sys.executable, "-c", code], out=out)
    assert out.getvalue().endswith("'\nDownloaded 1MB of 2MB\rDownloaded 2MB of 2MB\ndone\n")
