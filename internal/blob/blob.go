package blob

import (
	"errors"
	"fmt"
	"strings"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound means no blob has that name in the container.
	ErrNotFound = errors.New("blob: not found")
	// ErrInvalid means a blob or container name the store cannot hold.
	ErrInvalid = errors.New("blob: invalid name")
)

// MaxNameLength is the longest blob name (Azure allows 1024 characters;
// the embedded store keeps names short enough for every file system).
const MaxNameLength = 200

// checkName accepts the names both implementations store the same way:
// letters, digits, '-', '_', '.', and '/' between non-empty segments that
// are not "." or "..". Azure allows more, but a name that only one
// implementation can hold would make the two behave differently.
func checkName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return fmt.Errorf("%w: %q must be 1 to %d bytes", ErrInvalid, name, MaxNameLength)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has an empty, \".\" or \"..\" segment", ErrInvalid, name)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return fmt.Errorf("%w: %q: only letters, digits, '-', '_', '.' and '/' are allowed", ErrInvalid, name)
			}
		}
	}
	return nil
}

// checkContainer applies Azure's container naming rules: 3 to 63 lower-case
// letters, digits and single hyphens, starting and ending with a letter or
// digit (https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).
func checkContainer(name string) error {
	ok := len(name) >= 3 && len(name) <= 63 && name[0] != '-' && name[len(name)-1] != '-' && !strings.Contains(name, "--")
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%w: container %q: want 3-63 lower-case letters, digits and single hyphens", ErrInvalid, name)
	}
	return nil
}
