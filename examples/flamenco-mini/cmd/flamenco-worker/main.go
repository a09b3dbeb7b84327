// Command flamenco-worker registers with a Flamenco Mini manager and sends it
// heartbeats until it is stopped. With -once it registers, prints its ID and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"example.org/flamenco-mini/internal/worker"
	"example.org/flamenco-mini/pkg/api"
)

// gitHash is set at link time: go build -ldflags "-X main.gitHash=..."
var gitHash = "unknown"

func main() {
	hostname, _ := os.Hostname()
	managerURL := flag.String("manager", "http://localhost:8080", "URL of the manager")
	name := flag.String("name", hostname, "name of this worker")
	once := flag.Bool("once", false, "register, print the worker ID and exit")
	interval := flag.Duration("interval", 3*time.Second, "time between heartbeats")
	wait := flag.Duration("wait", time.Minute, "how long to keep retrying registration while the manager is not up")
	flag.Parse()
	log.SetPrefix("worker: ")
	if *name == "" {
		*name = "worker"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	client := worker.NewClient(*managerURL)
	log.Printf("Flamenco Mini worker (git %s) registering %q with %s", gitHash, *name, client.BaseURL)
	regCtx, cancel := context.WithTimeout(ctx, *wait)
	reg := api.WorkerRegistration{
		Name:               *name,
		Platform:           runtime.GOOS + "/" + runtime.GOARCH,
		SupportedTaskTypes: []string{"blender", "ffmpeg", "misc"},
	}
	w, err := client.RegisterWithRetry(regCtx, reg, time.Second, log.Printf)
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	if *once {
		fmt.Println(w.ID)
		return
	}
	log.Printf("registered as %s", w.ID)

	status := api.WorkerStatusAwake
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		if err := client.Heartbeat(ctx, w.ID, status); err != nil && !errors.Is(err, context.Canceled) {
			log.Printf("heartbeat failed: %v", err)
		} else if err == nil {
			if task, err := client.FetchTask(ctx, w.ID); err != nil && !errors.Is(err, context.Canceled) {
				log.Printf("fetching a task failed: %v", err)
			} else if task != nil {
				log.Printf("got task %s (%s) of job %s; this worker cannot run tasks yet", task.ID, task.Type, task.Job)
			}
		}
		select {
		case <-ctx.Done():
			// Say goodbye with a fresh context: ctx is already cancelled.
			bye, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := client.Heartbeat(bye, w.ID, api.WorkerStatusOffline); err != nil {
				log.Printf("signing off failed: %v", err)
			}
			cancel()
			log.Print("stopped")
			return
		case <-ticker.C:
		}
	}
}
