package pgtest

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// serverUser returns the attributes that run initdb and postgres: nil to run them as the
// current user, or, for root, the postgres user's credentials.
func serverUser() (*syscall.SysProcAttr, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres user (Debian's package makes it): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

// own gives dir to the user the server runs as.
func own(dir string, as *syscall.SysProcAttr) error {
	if as == nil || as.Credential == nil {
		return nil
	}
	return os.Chown(dir, int(as.Credential.Uid), int(as.Credential.Gid))
}

// withParentDeathSignal adds to as that the server gets SIGQUIT (PostgreSQL's immediate
// shutdown) if the test process dies without stopping it.
func withParentDeathSignal(as *syscall.SysProcAttr) *syscall.SysProcAttr {
	attr := new(syscall.SysProcAttr)
	if as != nil {
		*attr = *as
	}
	attr.Pdeathsig = syscall.SIGQUIT
	return attr
}
