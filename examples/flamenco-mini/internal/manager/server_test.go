package manager

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"example.org/flamenco-mini/pkg/api"
)

func request(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

func TestWorkerLifecycle(t *testing.T) {
	webapp := fstest.MapFS{"index.html": {Data: []byte("<title>Flamenco Mini</title>")}}
	s := New(Info{Version: "0.1.0", GitHash: "abc123"}, webapp, []byte("PK"))

	if rec := request(t, s, "GET", "/", ""); !strings.Contains(rec.Body.String(), "Flamenco Mini") {
		t.Fatalf("GET / = %d %q", rec.Code, rec.Body)
	}
	if rec := request(t, s, "GET", "/some/client/route", ""); rec.Code != http.StatusOK {
		t.Fatalf("client route: %d", rec.Code)
	}
	var v api.FlamencoVersion
	json.Unmarshal(request(t, s, "GET", api.GetVersionPath(), "").Body.Bytes(), &v)
	if v.Git != "abc123" || v.Name != "Flamenco Mini" {
		t.Fatalf("version = %+v", v)
	}

	rec := request(t, s, "POST", api.RegisterWorkerPath(), `{"name":"w1","platform":"linux/amd64"}`)
	var reg api.RegisteredWorker
	if err := json.Unmarshal(rec.Body.Bytes(), &reg); err != nil || reg.ID == "" || reg.Status != api.WorkerStatusStarting {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	if rec := request(t, s, "POST", api.WorkerHeartbeatPath(reg.ID), `{"status":"awake"}`); rec.Code != http.StatusNoContent {
		t.Fatalf("heartbeat: %d %s", rec.Code, rec.Body)
	}
	if rec := request(t, s, "POST", api.WorkerHeartbeatPath("nope"), `{"status":"awake"}`); rec.Code != http.StatusNotFound {
		t.Fatalf("heartbeat of unknown worker: %d", rec.Code)
	}
	if rec := request(t, s, "POST", api.ScheduleTaskPath(reg.ID), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("schedule task: %d", rec.Code)
	}
	var list api.WorkerList
	json.Unmarshal(request(t, s, "GET", api.FetchWorkersPath(), "").Body.Bytes(), &list)
	if len(list.Workers) != 1 || list.Workers[0].Status != api.WorkerStatusAwake || list.Workers[0].Name != "w1" {
		t.Fatalf("workers = %+v", list.Workers)
	}
	if rec := request(t, s, "POST", api.RegisterWorkerPath(), `{"name":""}`); rec.Code != http.StatusBadRequest {
		t.Fatalf("bad registration: %d", rec.Code)
	}
	if rec := request(t, s, "GET", "/api/v3/nope", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown API path: %d", rec.Code)
	}
	if rec := request(t, s, "GET", "/flamenco-addon.zip", ""); rec.Code != http.StatusOK || rec.Body.String() != "PK" {
		t.Fatalf("add-on: %d", rec.Code)
	}
}
