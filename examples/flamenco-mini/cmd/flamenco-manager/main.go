// Command flamenco-manager runs the Flamenco Mini manager: it serves the webapp at /,
// the Blender add-on at /flamenco-addon.zip and the JSON API under /api/v3/.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"example.org/flamenco-mini/internal/manager"
	"example.org/flamenco-mini/internal/manager/addonzip"
	"example.org/flamenco-mini/pkg/api"
	"example.org/flamenco-mini/web"
)

// gitHash is set at link time: go build -ldflags "-X main.gitHash=..."
var gitHash = "unknown"

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	flag.Parse()
	log.SetPrefix("manager: ")

	webapp := web.Static()
	if !web.Built() {
		log.Print("webapp not built into this binary; serving a placeholder page")
		webapp = nil
	}
	addon := addonzip.Bytes()
	if addon == nil {
		log.Print("add-on not packed into this binary; /flamenco-addon.zip answers 404")
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           manager.New(manager.Info{Version: api.SpecVersion, GitHash: gitHash}, webapp, addon),
		ReadHeaderTimeout: 10 * time.Second,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()

	log.Printf("Flamenco Mini manager %s (git %s) listening on %s", api.SpecVersion, gitHash, *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	log.Print("stopped")
}
