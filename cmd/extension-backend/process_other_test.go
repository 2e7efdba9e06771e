//go:build !linux

package main

import "syscall"

// dieWithParent is Linux's parent-death signal elsewhere: nothing, so t.Cleanup alone
// ends the child.
func dieWithParent() *syscall.SysProcAttr { return nil }
