"""Selection (pure): what the kernel may match at exec, and what it confirms."""
from s3slower.common.targets import ALL, ProcInfo, Selection, Target


def test_exec_comms_are_comm_and_exe_targets_cut_to_15_bytes():
    sel = Selection.build(watch=("mc", "a-very-long-program-name"), targets=(
        Target("t1", "exe_basename", "warp"), Target("t2", "cmdline_substring", "boto3")))
    assert sel.exec_comms() == ("a-very-long-pro", "mc", "warp")


def test_everything_mode_and_pid_mode():
    assert Selection.build().trace_all and Selection.build().match(ProcInfo(1, "x", "", "")) is ALL
    sel = Selection.build(pids=(42,))
    assert sel.exec_comms() == ()
    assert sel.match(ProcInfo(42, "x", "/bin/x", "x")).id == "pid:42"
    assert sel.match(ProcInfo(43, "x", "/bin/x", "x")) is None


def test_kernel_guess_is_confirmed_by_match():
    sel = Selection.build(targets=(Target("t", "exe_basename", "curl"),))
    # a process renamed to "curl" but running another executable is not traced
    assert sel.match(ProcInfo(5, "curl", "/usr/bin/wget", "curl")) is None
    assert sel.match(ProcInfo(5, "curl", "/usr/bin/curl", "curl")).id == "t"
