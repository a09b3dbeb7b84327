// Package worker is the worker side of the Flamenco Mini API: registration and heartbeats.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"example.org/flamenco-mini/pkg/api"
)

// Client talks to one manager.
type Client struct {
	BaseURL string
	HTTP    *http.Client
}

// NewClient returns a client for the manager at baseURL (e.g. http://manager:8080).
func NewClient(baseURL string) *Client {
	return &Client{
		BaseURL: strings.TrimRight(baseURL, "/"),
		HTTP:    &http.Client{Timeout: 10 * time.Second},
	}
}

// StatusError is a non-success answer from the manager.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("manager answered %d: %s", e.Status, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e api.Error
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(raw, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return resp.StatusCode, &StatusError{Status: resp.StatusCode, Message: e.Message}
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("decoding %s answer: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}

// Version asks the manager for its version.
func (c *Client) Version(ctx context.Context) (api.FlamencoVersion, error) {
	var v api.FlamencoVersion
	_, err := c.do(ctx, http.MethodGet, api.GetVersionPath(), nil, &v)
	return v, err
}

// Register registers a worker once.
func (c *Client) Register(ctx context.Context, reg api.WorkerRegistration) (api.RegisteredWorker, error) {
	var w api.RegisteredWorker
	_, err := c.do(ctx, http.MethodPost, api.RegisterWorkerPath(), reg, &w)
	return w, err
}

// RegisterWithRetry registers, retrying connection failures and server errors every
// interval until ctx ends: the manager may still be starting.
func (c *Client) RegisterWithRetry(ctx context.Context, reg api.WorkerRegistration, interval time.Duration, logf func(string, ...any)) (api.RegisteredWorker, error) {
	for attempt := 1; ; attempt++ {
		w, err := c.Register(ctx, reg)
		if err == nil {
			return w, nil
		}
		if se, ok := err.(*StatusError); ok && se.Status < 500 {
			return w, err // the manager refused: retrying will not help
		}
		logf("registration attempt %d failed: %v", attempt, err)
		select {
		case <-ctx.Done():
			return w, fmt.Errorf("giving up registering after %d attempts: %w", attempt, err)
		case <-time.After(interval):
		}
	}
}

// Heartbeat tells the manager the worker is alive and in the given status.
func (c *Client) Heartbeat(ctx context.Context, workerID string, status api.WorkerStatus) error {
	_, err := c.do(ctx, http.MethodPost, api.WorkerHeartbeatPath(workerID), api.WorkerStatusChange{Status: status}, nil)
	return err
}

// FetchTask asks for a task; it returns nil without error when there is none.
func (c *Client) FetchTask(ctx context.Context, workerID string) (*api.AssignedTask, error) {
	var t api.AssignedTask
	code, err := c.do(ctx, http.MethodPost, api.ScheduleTaskPath(workerID), nil, &t)
	if err != nil || code == http.StatusNoContent {
		return nil, err
	}
	return &t, nil
}

// Workers lists the workers the manager knows.
func (c *Client) Workers(ctx context.Context) ([]api.WorkerSummary, error) {
	var l api.WorkerList
	_, err := c.do(ctx, http.MethodGet, api.FetchWorkersPath(), nil, &l)
	return l.Workers, err
}
