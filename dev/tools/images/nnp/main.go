// nnp: the stand-in for the e2e image nonewprivs.  Installed setuid root in
// the image, it prints the effective uid it runs with, which shows whether
// no_new_privs kept the setuid bit from taking effect.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
