// web: the stand-in for the web server images of the conformance suite
// (e2e-test-images/nginx, e2e-test-images/httpd, cri-tools' hostnet-nginx).
// It answers every GET with 200 and a short page, logs its name and each
// request to stdout, writes its pid to -pidfile, and with -title runs under
// that process title (/proc/PID/cmdline), as nginx's "nginx: master
// process ..." which the suite looks for.  SIGINT and SIGTERM stop it.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	addr := flag.String("addr", ":80", "address to listen on")
	pidfile := flag.String("pidfile", "", "file to write the pid to")
	title := flag.String("title", "", "process title (argv[0]) to run under")
	flag.Parse()

	if *title != "" && os.Args[0] != *title {
		// Exec the same path again (a link's name stays the process's
		// name, /proc/PID/comm) with the title as argv[0].
		argv := append([]string{*title}, os.Args[1:]...)
		err := syscall.Exec(os.Args[0], argv, os.Environ())
		fmt.Fprintf(os.Stderr, "re-exec %s: %v\n", os.Args[0], err)
		os.Exit(1)
	}
	name := filepath.Base(os.Args[0])
	if comm, err := os.ReadFile("/proc/self/comm"); err == nil {
		name = strings.TrimSpace(string(comm))
	}
	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		os.Exit(0)
	}()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s: %s %s %s\n", name, r.RemoteAddr, r.Method, r.URL.Path)
		fmt.Fprintf(w, "<html><body>%s stand-in</body></html>\n", name)
	})
	fmt.Printf("%s: listening on %s\n", name, *addr)
	if err := http.ListenAndServe(*addr, nil); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
