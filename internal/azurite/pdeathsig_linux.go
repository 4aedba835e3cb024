package azurite

import "syscall"

// setParentDeathSignal kills the emulator if the test binary dies without
// running its cleanups (for example on a -timeout panic), so no orphan node
// process is left behind.
func setParentDeathSignal(a *syscall.SysProcAttr) {
	a.Pdeathsig = syscall.SIGKILL
}
