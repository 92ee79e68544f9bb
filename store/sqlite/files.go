package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The modes of what the store creates: the database holds every run's variables, its
// templates and the server's token hashes and webhook secrets, so only its owner may read it.
// SQLite gives the -wal and -shm files the database file's mode.
const (
	// DirMode is the mode of a data directory stepflow creates.
	DirMode fs.FileMode = 0o700
	// FileMode is the mode of the database file and of a backup.
	FileMode fs.FileMode = 0o600
)

// createPrivate creates path empty with FileMode, unless it exists (then created is false).
// SQLite takes an empty file for an empty database.
func createPrivate(path string) (created bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, f.Close()
}

// OpenToOthers lists what of the store at path users other than its owner may use: its
// directory, the database and its -wal and -shm files, each as "NAME is MODE". What does not
// exist is left out. A store created by stepflow is not listed; one created by an older
// version, or by hand, may be, and its operator should tighten it (chmod 700 the directory,
// 600 the files).
func OpenToOthers(path string) ([]string, error) {
	var open []string
	for _, p := range []string{filepath.Dir(path), path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("check the store's permissions: %w", err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			open = append(open, fmt.Sprintf("%s is %04o", p, info.Mode().Perm()))
		}
	}
	return open, nil
}
