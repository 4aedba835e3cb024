//go:build !unix

package azurite

import (
	"os"
	"os/exec"
)

func setProcessGroup(*exec.Cmd) {}

func interruptGroup(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt) // unsupported on Windows; killGroup follows
}

func killGroup(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}
