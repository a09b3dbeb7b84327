// Package manager implements the Flamenco Mini manager: the JSON API of
// api/flamenco-mini-openapi.yaml, the webapp and the add-on download.
// All state lives in memory.
package manager

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"example.org/flamenco-mini/pkg/api"
)

// Info describes this build of the manager.
type Info struct {
	Version string
	GitHash string
}

// Server is the manager's HTTP handler.
type Server struct {
	info     Info
	webapp   fs.FS  // nil when the webapp was not built into this binary
	addonZip []byte // nil when the add-on was not packed into this binary
	now      func() time.Time

	mu      sync.Mutex
	workers map[string]*api.WorkerSummary
	mux     *http.ServeMux
}

// New returns a manager serving the given webapp files and add-on zip (either may be nil).
func New(info Info, webapp fs.FS, addonZip []byte) *Server {
	s := &Server{
		info:     info,
		webapp:   webapp,
		addonZip: addonZip,
		now:      time.Now,
		workers:  map[string]*api.WorkerSummary{},
		mux:      http.NewServeMux(),
	}
	s.mux.HandleFunc(api.PatternGetVersion, s.getVersion)
	s.mux.HandleFunc(api.PatternRegisterWorker, s.registerWorker)
	s.mux.HandleFunc(api.PatternFetchWorkers, s.fetchWorkers)
	s.mux.HandleFunc(api.PatternWorkerHeartbeat, s.workerHeartbeat)
	s.mux.HandleFunc(api.PatternScheduleTask, s.scheduleTask)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		sendError(w, http.StatusNotFound, "no such API endpoint: %s %s", r.Method, r.URL.Path)
	})
	s.mux.HandleFunc("GET /flamenco-addon.zip", s.serveAddon)
	s.mux.HandleFunc("/", s.serveWebapp) // not "GET /": that would conflict with "/api/"
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	log.Printf("%s %s %d %s", r.Method, r.URL.Path, rec.status, time.Since(start).Round(time.Microsecond))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) {
	sendJSON(w, http.StatusOK, api.FlamencoVersion{
		Name:    api.SpecTitle,
		Version: s.info.Version,
		Git:     s.info.GitHash,
	})
}

func (s *Server) registerWorker(w http.ResponseWriter, r *http.Request) {
	var req api.WorkerRegistration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	if err := dec.Decode(&req); err != nil {
		sendError(w, http.StatusBadRequest, "invalid worker registration: %v", err)
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || req.Platform == "" {
		sendError(w, http.StatusBadRequest, "a worker needs a name and a platform")
		return
	}
	worker := &api.WorkerSummary{
		ID:       newID(),
		Name:     req.Name,
		Platform: req.Platform,
		Status:   api.WorkerStatusStarting,
		LastSeen: s.now().UTC(),
	}
	s.mu.Lock()
	s.workers[worker.ID] = worker
	s.mu.Unlock()
	log.Printf("registered worker %q (%s) as %s", worker.Name, worker.Platform, worker.ID)
	sendJSON(w, http.StatusOK, api.RegisteredWorker{ID: worker.ID, Name: worker.Name, Status: worker.Status})
}

func (s *Server) fetchWorkers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	list := api.WorkerList{Workers: make([]api.WorkerSummary, 0, len(s.workers))}
	for _, worker := range s.workers {
		list.Workers = append(list.Workers, *worker)
	}
	s.mu.Unlock()
	sort.Slice(list.Workers, func(i, j int) bool {
		a, b := list.Workers[i], list.Workers[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
	sendJSON(w, http.StatusOK, list)
}

func (s *Server) workerHeartbeat(w http.ResponseWriter, r *http.Request) {
	var req api.WorkerStatusChange
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		sendError(w, http.StatusBadRequest, "invalid status change: %v", err)
		return
	}
	switch req.Status {
	case api.WorkerStatusStarting, api.WorkerStatusAwake, api.WorkerStatusAsleep, api.WorkerStatusOffline:
	default:
		sendError(w, http.StatusBadRequest, "unknown worker status %q", req.Status)
		return
	}
	id := r.PathValue("worker_id")
	s.mu.Lock()
	worker, ok := s.workers[id]
	if ok {
		worker.Status = req.Status
		worker.LastSeen = s.now().UTC()
	}
	s.mu.Unlock()
	if !ok {
		sendError(w, http.StatusNotFound, "no worker %q", id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// scheduleTask hands out nothing yet: this manager has no job queue.
func (s *Server) scheduleTask(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("worker_id")
	s.mu.Lock()
	_, ok := s.workers[id]
	s.mu.Unlock()
	if !ok {
		sendError(w, http.StatusNotFound, "no worker %q", id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveAddon(w http.ResponseWriter, r *http.Request) {
	if s.addonZip == nil {
		http.Error(w, "this manager was built without the add-on", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="flamenco-addon.zip"`)
	w.Write(s.addonZip)
}

func (s *Server) serveWebapp(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if s.webapp == nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>Flamenco Mini</title><h1>Flamenco Mini</h1>"+
			"<p>This manager was built without its webapp. The API is at <code>%s</code>.</p>\n", api.PathGetVersion)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" || strings.HasPrefix(name, ".") {
		name = "index.html"
	}
	if _, err := fs.Stat(s.webapp, name); errors.Is(err, fs.ErrNotExist) {
		name = "index.html" // client-side routes all land on the app
	}
	if name != "index.html" {
		// Bundles carry a content hash in their name.
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	http.ServeFileFS(w, r, s.webapp, name)
}

func sendJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func sendError(w http.ResponseWriter, status int, format string, args ...any) {
	sendJSON(w, status, api.Error{Code: status, Message: fmt.Sprintf(format, args...)})
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40 // UUID version 4
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
