// Package schematest serves the subset of the Confluent Schema Registry's
// REST API that schemas.HTTPRegistry uses, for tests of the registry
// client and of stages configured with -schema-registry.url. It keeps the
// registry's semantics (one id per distinct schema across subjects,
// versions per subject, error bodies with error_code, basic auth, its
// content type) so that a client passing against it passes against the
// real one.
package schematest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ContentType is the registry's media type.
const ContentType = "application/vnd.schemaregistry.v1+json"

// Error codes the registry answers with.
const (
	codeSubjectNotFound = 40401
	codeSchemaNotFound  = 40403
)

// Registry implements the part of the Confluent Schema Registry REST API that
// HTTPRegistry uses, with the registry's semantics: one id per distinct
// schema across subjects, versions per subject, error bodies with
// error_code, basic auth, and its content type.
type Registry struct {
	User, Pass string // basic auth, when User is set
	nextID     int32
	FailNext   atomic.Int32 // answer this many requests with 503 first
	Hang       atomic.Bool  // never answer, until the client gives up
	Compatible func(subject, old, new string) bool

	mu       sync.Mutex
	ids      map[string]int32   // schema text → id
	texts    map[int32]string   // id → schema text
	subjects map[string][]int32 // subject → ids, one per version
	requests map[string]int     // "METHOD first-path-segment" → count
}

func NewRegistry() *Registry {
	return &Registry{nextID: 100, ids: map[string]int32{}, texts: map[int32]string{},
		subjects: map[string][]int32{}, requests: map[string]int{}}
}

// Count returns how many requests of one kind it answered, keyed
// "METHOD first-path-segment" (e.g. "POST subjects").
func (f *Registry) Count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[key]
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}

// Put registers text under subject as the registry would, returning its id.
func (f *Registry) Put(subject, text string) int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.put(subject, text)
}

func (f *Registry) put(subject, text string) int32 {
	id, ok := f.ids[text]
	if !ok {
		id = f.nextID
		f.nextID += 7 // ids far from the fixed table's 1-6
		f.ids[text], f.texts[id] = id, text
	}
	for _, v := range f.subjects[subject] {
		if v == id {
			return id
		}
	}
	f.subjects[subject] = append(f.subjects[subject], id)
	return id
}

func (f *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.Hang.Load() {
		// The server notices a client gone only once the body is read.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	if f.FailNext.Add(-1) >= 0 {
		writeError(w, http.StatusServiceUnavailable, 50003, "Error while forwarding the request to the leader")
		return
	}
	if f.User != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != f.User || p != f.Pass {
			writeError(w, http.StatusUnauthorized, 401, "Unauthorized")
			return
		}
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests[r.Method+" "+parts[0]]++
	var req struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if r.Method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); ct != ContentType {
			writeError(w, http.StatusUnsupportedMediaType, 415, "bad content type "+ct)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Schema == "" || (req.SchemaType != "" && req.SchemaType != "AVRO") {
			writeError(w, http.StatusUnprocessableEntity, 42201, "Invalid schema")
			return
		}
	}
	reply := func(v any) {
		w.Header().Set("Content-Type", ContentType)
		json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		subject := parts[1]
		if vs := f.subjects[subject]; len(vs) > 0 && f.Compatible != nil {
			if old := f.texts[vs[len(vs)-1]]; old != req.Schema && !f.Compatible(subject, old, req.Schema) {
				writeError(w, http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema for subject \""+subject+"\"")
				return
			}
		}
		reply(map[string]any{"id": f.put(subject, req.Schema)})
	case r.Method == http.MethodPost && len(parts) == 2 && parts[0] == "subjects":
		vs, ok := f.subjects[parts[1]]
		if !ok {
			writeError(w, http.StatusNotFound, codeSubjectNotFound, "Subject '"+parts[1]+"' not found.")
			return
		}
		for i, id := range vs {
			if f.texts[id] == req.Schema {
				reply(map[string]any{"subject": parts[1], "id": id, "version": i + 1, "schema": req.Schema})
				return
			}
		}
		writeError(w, http.StatusNotFound, codeSchemaNotFound, "Schema not found")
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "schemas" && parts[1] == "ids":
		id, err := strconv.Atoi(parts[2])
		text, ok := f.texts[int32(id)]
		if err != nil || !ok {
			writeError(w, http.StatusNotFound, codeSchemaNotFound, "Schema "+parts[2]+" not found")
			return
		}
		reply(map[string]any{"schema": text})
	default:
		writeError(w, http.StatusNotFound, 404, "HTTP 404 Not Found")
	}
}

// Start serves f on a loopback address until the test ends.
func Start(t testing.TB, f *Registry) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

// ID returns the id the registry gave a schema text, if it has it.
func (f *Registry) ID(text string) (int32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.ids[text]
	return id, ok
}

// Len returns the number of distinct schemas registered.
func (f *Registry) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.texts)
}

// SetNextID makes id the next schema's id, as another registry's history
// would.
func (f *Registry) SetNextID(id int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID = id
}
