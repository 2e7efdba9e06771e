package main

import "syscall"

// dieWithParent has the kernel kill the child when the test process dies, so a test
// binary killed by its -timeout leaves no backend running behind it (t.Cleanup does not
// run then).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// processRunning reports whether a process with the pid exists (signal 0 checks, sends
// nothing).
func processRunning(pid int) bool { return syscall.Kill(pid, 0) == nil }
