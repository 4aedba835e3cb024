package batch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/blob"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jobs"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/queue"
	storeembedded "github.com/foundry-gateway/gateway/internal/store/embedded"
)

var az = azurite.Shared{Service: azurite.Blob}

func TestMain(m *testing.M) { os.Exit(az.Run(m)) }

// fakeQueue records sends; like both real queues it drops an id still queued.
type fakeQueue struct {
	mu    sync.Mutex
	sent  map[string]int // sends accepted per id
	fails int            // refuse the send after this many (0 = never)
	n     int
}

func (q *fakeQueue) Send(_ context.Context, m queue.Outgoing) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n++
	if q.fails > 0 && q.n > q.fails {
		return errors.New("queue down")
	}
	if q.sent[m.ID] == 0 {
		q.sent[m.ID]++
	}
	return nil
}

type lines struct {
	st *jobs.Store
	q  *fakeQueue
}

func (l lines) Submit(ctx context.Context, s jobs.Submission) (*jobs.Job, error) {
	return jobs.Submit(ctx, l.st, l.q, s)
}
func (l lines) Range(ctx context.Context, k, from, to string, limit int) ([]*jobs.Job, error) {
	return l.st.Range(ctx, k, from, to, limit)
}
func (l lines) Cancel(ctx context.Context, k, id string) (*jobs.Job, error) {
	return l.st.Cancel(ctx, k, id)
}

type fixture struct {
	s    *Service
	js   *jobs.Store
	q    *fakeQueue
	now  time.Time
	blob Blobs
}

func (f *fixture) clock() time.Time { return f.now }

func newFixture(t *testing.T, blobs Blobs, opt Options) *fixture {
	t.Helper()
	ss, err := storeembedded.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	ctx := context.Background()
	ft, _ := ss.Table(ctx, FilesTable)
	bt, _ := ss.Table(ctx, BatchesTable)
	jt, _ := ss.Table(ctx, jobs.Table)
	if blobs == nil {
		if blobs, err = blob.OpenDir(t.TempDir(), "batch-files"); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{q: &fakeQueue{sent: map[string]int{}}, now: time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC), blob: blobs}
	f.js = jobs.NewStore(jt, f.clock)
	opt.Now = f.clock
	f.s = New(ft, bt, blobs, lines{st: f.js, q: f.q}, opt)
	return f
}

// check admits models m and small-* (a scope of two models).
func check(_ context.Context, op openai.Op, body []byte) (openai.Request, []byte, error) {
	req, err := openai.Parse(op, openai.StyleV1, "", "", body)
	if err != nil {
		return req, nil, httperr.BadRequest("invalid_request_error", err.Error())
	}
	if req.Model != "m" && req.Model != "m2" {
		return req, nil, httperr.Forbidden("model_not_allowed", "not in scope")
	}
	return req, body, nil
}

func chatLine(id, model string) string {
	return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}]}}`, id, model)
}

func (f *fixture) create(t *testing.T, content string) *Batch {
	t.Helper()
	ctx := context.Background()
	file, err := f.s.Upload(ctx, "k1", "in.jsonl", PurposeBatch, []byte(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.s.Create(ctx, Caller{KeyID: "k1", Team: "t", App: "a"}, CreateRequest{InputFileID: file.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}, check)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// finish ends line i's job as the drain would.
func (f *fixture) finish(t *testing.T, b *Batch, i int, status jobs.Status, code int, body string) {
	t.Helper()
	_, ok, err := f.js.Update(context.Background(), b.KeyID, jobID(b.ID, i), func(j *jobs.Job) bool {
		j.Status, j.ResultStatus, j.ResultBody = status, code, []byte(body)
		if status == jobs.StatusFailed && body == "" {
			j.Error = "gave up"
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("finish line %d: %v", i, err)
	}
}

func (f *fixture) advance(t *testing.T) AdvanceStats {
	t.Helper()
	st, err := f.s.Advance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fixture) get(t *testing.T, id string) *Batch {
	t.Helper()
	b, err := f.s.Get(context.Background(), "k1", id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) file(t *testing.T, id string) []outputLine {
	t.Helper()
	if id == "" {
		return nil
	}
	_, data, err := f.s.Content(context.Background(), "k1", id)
	if err != nil {
		t.Fatal(err)
	}
	var out []outputLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l outputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func ids(ls []outputLine) string {
	var s []string
	for _, l := range ls {
		c := l.CustomID
		if l.Error != nil {
			c += "=" + l.Error.Code
		} else if l.Response != nil {
			c += fmt.Sprintf("=%d", l.Response.StatusCode)
		}
		s = append(s, c)
	}
	return strings.Join(s, ",")
}

// TestLifecycle runs a batch from upload to its output and error files,
// on the directory store and on Azurite's blob service.
func TestLifecycle(t *testing.T) {
	for _, impl := range []string{"Dir", "Azurite"} {
		t.Run(impl, func(t *testing.T) {
			var blobs Blobs
			if impl == "Azurite" {
				a, err := blob.NewAzure(blob.AzureOptions{ConnectionString: az.Start(t).ConnectionString(), Container: "batch-files"})
				if err != nil {
					t.Fatal(err)
				}
				if err := a.EnsureContainer(t.Context()); err != nil {
					t.Fatal(err)
				}
				blobs = a
			}
			f := newFixture(t, blobs, Options{})
			in := strings.Join([]string{chatLine("a", "m"), `{"custom_id":"bad",`, chatLine("b", "m2"),
				strings.Replace(chatLine("c", "m"), "/v1/chat/completions", "/v1/embeddings", 1), chatLine("d", "other"),
				chatLine("a", "m"), chatLine("e", "m"), strings.Replace(chatLine("f", "m"), `"POST"`, `"GET"`, 1), ""}, "\n")
			b := f.create(t, in)
			if b.Status != StatusValidating || b.Lines != 8 || b.Invalid != 5 || b.Failed != 5 || len(b.Errors) != 5 || *b.Errors[0].Line != 2 {
				t.Fatalf("created: %+v", b)
			}
			f.advance(t)
			b = f.get(t, b.ID)
			if b.Status != StatusInProgress || b.Submitted != 8 || len(f.q.sent) != 3 || b.InProgressAt.IsZero() {
				t.Fatalf("after advance: %s submitted %d, %d sent", b.Status, b.Submitted, len(f.q.sent))
			}
			f.finish(t, b, 0, jobs.StatusSucceeded, 200, `{"object":"chat.completion","n":0}`)
			f.finish(t, b, 2, jobs.StatusFailed, 400, `{"error":{"code":"bad"}}`)
			f.advance(t)
			if b = f.get(t, b.ID); b.Status != StatusInProgress || b.Completed != 1 || b.Failed != 6 {
				t.Fatalf("counts mid-way: %s %d/%d", b.Status, b.Completed, b.Failed)
			}
			f.finish(t, b, 6, jobs.StatusSucceeded, 200, `{"object":"chat.completion","n":6}`)
			f.advance(t)
			b = f.get(t, b.ID)
			if b.Status != StatusCompleted || b.Completed != 2 || b.Failed != 6 || b.CompletedAt.IsZero() || b.FinalizingAt.IsZero() {
				t.Fatalf("final: %+v", b.View())
			}
			if got := ids(f.file(t, b.OutputFileID)); got != "a=200,e=200" {
				t.Errorf("output: %s", got)
			}
			want := "bad=invalid_json_line,b=400,c=mismatched_endpoint,d=model_not_allowed,a=duplicate_custom_id,f=invalid_method"
			if got := ids(f.file(t, b.ErrorFileID)); got != want {
				t.Errorf("errors: got %s, want %s", got, want)
			}
			out := f.file(t, b.OutputFileID)
			if out[0].Response.RequestID != jobID(b.ID, 0) || out[0].ID != requestID(b.ID, 0) || string(out[0].Response.Body) != `{"object":"chat.completion","n":0}` {
				t.Errorf("output line: %+v", out[0])
			}
			// Advancing again changes nothing; the index row is gone.
			if st := f.advance(t); st.Active != 0 {
				t.Errorf("active after finishing: %+v", st)
			}
			files, _ := f.s.Files(context.Background(), "k1", "")
			if len(files) != 3 {
				t.Errorf("files: %d, want input, output and error", len(files))
			}
			if _, err := f.s.Get(context.Background(), "k2", b.ID); httperr.From(err).Status != http.StatusNotFound {
				t.Errorf("another caller reads the batch: %v", err)
			}
		})
	}
}

// TestSubmitResumesAfterCrash: the queue fails part-way through queueing
// (as a crash would stop it); the next Advance resumes from the saved
// progress and every line ends up as exactly one job and one message.
func TestSubmitResumesAfterCrash(t *testing.T) {
	f := newFixture(t, nil, Options{})
	var in []string
	for i := range 250 {
		in = append(in, chatLine(fmt.Sprintf("r%03d", i), "m"))
	}
	b := f.create(t, strings.Join(in, "\n"))
	f.q.fails = 130
	if _, err := f.s.Advance(context.Background()); err == nil {
		t.Fatal("advance with a failing queue: no error")
	}
	if b = f.get(t, b.ID); b.Submitted != 100 || b.Status != StatusValidating {
		t.Fatalf("progress saved: %d %s, want 100 validating", b.Submitted, b.Status)
	}
	f.q.fails = 0
	f.advance(t)
	b = f.get(t, b.ID)
	rows, _ := f.js.Range(context.Background(), "k1", "job_", "job`", 0)
	if b.Status != StatusInProgress || b.Submitted != 250 || len(rows) != 250 || len(f.q.sent) != 250 {
		t.Fatalf("after resume: %s submitted %d, %d jobs, %d messages", b.Status, b.Submitted, len(rows), len(f.q.sent))
	}
	for _, j := range rows {
		if j.Status != jobs.StatusQueued {
			t.Fatalf("job %s: %s", j.ID, j.Status)
		}
	}
}

// TestExpiry: past its 24 h window a batch cancels its queued lines and
// ends expired, with the finished lines in the output file.
func TestExpiry(t *testing.T) {
	f := newFixture(t, nil, Options{})
	b := f.create(t, strings.Join([]string{chatLine("a", "m"), chatLine("b", "m"), chatLine("c", "m")}, "\n"))
	f.advance(t)
	f.finish(t, b, 1, jobs.StatusSucceeded, 200, `{}`)
	f.now = f.now.Add(24*time.Hour + time.Second)
	f.advance(t)
	b = f.get(t, b.ID)
	if b.Status != StatusExpired || b.ExpiredAt.IsZero() || b.Completed != 1 {
		t.Fatalf("expired: %+v", b.View())
	}
	if got := ids(f.file(t, b.OutputFileID)) + "|" + ids(f.file(t, b.ErrorFileID)); got != "b=200|a=batch_expired,c=batch_expired" {
		t.Errorf("files: %s", got)
	}
	j, _ := f.js.Get(context.Background(), "k1", jobID(b.ID, 0))
	if j.Status != jobs.StatusCancelled {
		t.Errorf("queued line of an expired batch: %s, want cancelled", j.Status)
	}
}

// TestCancel: a batch cancelled before its lines were queued queues none;
// one cancelled while a line runs waits for it and keeps its result.
func TestCancel(t *testing.T) {
	f := newFixture(t, nil, Options{})
	ctx := context.Background()
	b := f.create(t, chatLine("a", "m")+"\n"+chatLine("b", "m"))
	if c, err := f.s.Cancel(ctx, "k1", b.ID); err != nil || c.Status != StatusCancelling {
		t.Fatalf("cancel: %v %v", c, err)
	}
	f.advance(t)
	if b = f.get(t, b.ID); b.Status != StatusCancelled || len(f.q.sent) != 0 || ids(f.file(t, b.ErrorFileID)) != "a=batch_cancelled,b=batch_cancelled" {
		t.Fatalf("cancelled before queueing: %s, %d sent", b.Status, len(f.q.sent))
	}
	if _, err := f.s.Cancel(ctx, "k1", b.ID); httperr.From(err).Status != http.StatusConflict {
		t.Errorf("cancel a cancelled batch: %v", err)
	}

	b = f.create(t, chatLine("a", "m")+"\n"+chatLine("b", "m"))
	f.advance(t)
	if _, _, err := f.js.Update(ctx, "k1", jobID(b.ID, 0), func(j *jobs.Job) bool { j.Status = jobs.StatusRunning; return true }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Cancel(ctx, "k1", b.ID); err != nil {
		t.Fatal(err)
	}
	f.advance(t)
	if b = f.get(t, b.ID); b.Status != StatusCancelling {
		t.Fatalf("with a line running: %s, want cancelling", b.Status)
	}
	f.finish(t, b, 0, jobs.StatusSucceeded, 200, `{}`)
	f.advance(t)
	if b = f.get(t, b.ID); b.Status != StatusCancelled || ids(f.file(t, b.OutputFileID)) != "a=200" || b.Completed != 1 {
		t.Fatalf("cancelled: %s, output %s", b.Status, ids(f.file(t, b.OutputFileID)))
	}
}

// TestLimits: requests the API refuses up front.
func TestLimits(t *testing.T) {
	f := newFixture(t, nil, Options{MaxLines: 3, MaxFileBytes: 1000})
	ctx := context.Background()
	if _, err := f.s.Upload(ctx, "k1", "x", PurposeBatch, bytes.Repeat([]byte("x"), 1001), 0); httperr.From(err).Status != http.StatusRequestEntityTooLarge {
		t.Errorf("large file: %v", err)
	}
	if _, err := f.s.Upload(ctx, "k1", "x", "fine-tune", []byte("x"), 0); httperr.From(err).Status != http.StatusBadRequest {
		t.Errorf("other purpose: %v", err)
	}
	file, err := f.s.Upload(ctx, "k1", "x", PurposeBatch, []byte(strings.Repeat(chatLine("a", "m")+"\n", 4)), 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]CreateRequest{
		"too many lines": {InputFileID: file.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"},
		"endpoint":       {InputFileID: file.ID, Endpoint: "/v1/images/generations", CompletionWindow: "24h"},
		"window":         {InputFileID: file.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "48h"},
		"no such file":   {InputFileID: "file-nope", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"},
	} {
		if _, err := f.s.Create(ctx, Caller{KeyID: "k1"}, req, check); httperr.From(err).Status != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", name, err)
		}
	}
	if _, err := f.s.Create(ctx, Caller{KeyID: "k2"}, CreateRequest{InputFileID: file.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}, check); httperr.From(err).Status != http.StatusBadRequest {
		t.Errorf("another caller's file: %v", err)
	}
}

// TestFileExpiry: a file is gone at its expires_at, and the sweep deletes
// its content.
func TestFileExpiry(t *testing.T) {
	f := newFixture(t, nil, Options{})
	ctx := context.Background()
	file, err := f.s.Upload(ctx, "k1", "x.jsonl", PurposeBatch, []byte(chatLine("a", "m")), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if v := file.View(); *v.ExpiresAt-v.CreatedAt != 3600 {
		t.Errorf("expires_at: %+v", v)
	}
	f.advance(t) // the first sweep
	f.now = f.now.Add(time.Hour)
	if _, err := f.s.File(ctx, "k1", file.ID); httperr.From(err).Status != http.StatusNotFound {
		t.Errorf("expired file: %v", err)
	}
	if l, _ := f.s.Files(ctx, "k1", ""); len(l) != 0 {
		t.Errorf("listed: %d", len(l))
	}
	f.advance(t) // the next sweep is due an hour later
	if _, err := f.blob.Get(ctx, file.ID); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("content of the expired file: %v", err)
	}
}

// TestLineJobCancelled: a line whose job the caller cancelled through the
// jobs API is reported as such; the batch still completes.
func TestLineJobCancelled(t *testing.T) {
	f := newFixture(t, nil, Options{})
	b := f.create(t, chatLine("a", "m")+"\n"+chatLine("b", "m"))
	f.advance(t)
	if _, err := f.js.Cancel(context.Background(), "k1", jobID(b.ID, 0)); err != nil {
		t.Fatal(err)
	}
	f.finish(t, b, 1, jobs.StatusSucceeded, 200, `{}`)
	f.advance(t)
	if b = f.get(t, b.ID); b.Status != StatusCompleted || ids(f.file(t, b.ErrorFileID)) != "a=request_cancelled" || b.Completed != 1 {
		t.Fatalf("batch: %s, errors %s", b.Status, ids(f.file(t, b.ErrorFileID)))
	}
}
