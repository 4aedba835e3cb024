package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// minOutputTokens is the Responses API's lower bound on max_output_tokens.
const minOutputTokens = 16

type responsesRequest struct {
	Input              json.RawMessage `json:"input"`
	Instructions       *string         `json:"instructions"`
	MaxOutputTokens    *int64          `json:"max_output_tokens"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Stream             bool            `json:"stream"`
	Store              *bool           `json:"store"`
	Tools              json.RawMessage `json:"tools"`
}

// responseObject is an OpenAI "response" object.
type responseObject struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Background         bool               `json:"background"`
	Error              json.RawMessage    `json:"error"` // always null
	IncompleteDetails  *incompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int64             `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []any              `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Reasoning          struct {
		Effort  *string `json:"effort"`
		Summary *string `json:"summary"`
	} `json:"reasoning"`
	Store       bool    `json:"store"`
	Temperature float64 `json:"temperature"`
	Text        struct {
		Format struct {
			Type string `json:"type"`
		} `json:"format"`
	} `json:"text"`
	ToolChoice string          `json:"tool_choice"`
	Tools      json.RawMessage `json:"tools"`
	TopP       float64         `json:"top_p"`
	Truncation string          `json:"truncation"`
	Usage      *responseUsage  `json:"usage"`
	Metadata   struct{}        `json:"metadata"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

type responseUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int64 `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int64 `json:"total_tokens"`
}

type messageItem struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []outputText `json:"content"`
}

type reasoningItem struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Summary []any  `json:"summary"`
}

type outputText struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
}

// responseEvent is any Responses streaming event; each type uses a subset
// of the fields.
type responseEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *responseObject `json:"response,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	Item           any             `json:"item,omitempty"`
	Part           *outputText     `json:"part,omitempty"`
	Delta          *string         `json:"delta,omitempty"`
	Text           *string         `json:"text,omitempty"`
	Logprobs       json.RawMessage `json:"logprobs,omitempty"`
}

// createResponse serves POST /responses.
func (c *call) createResponse() error {
	var req responsesRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.Input) == 0 || string(req.Input) == "null" {
		return errMissing("input")
	}
	c.input = req.Input
	var limit int64
	if req.MaxOutputTokens != nil {
		if *req.MaxOutputTokens < minOutputTokens {
			return errInvalid("max_output_tokens", fmt.Sprintf("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= %d, but got %d instead.", minOutputTokens, *req.MaxOutputTokens))
		}
		limit = *req.MaxOutputTokens
	}
	p := newPrompt(c.d.Model)
	if req.PreviousResponseID != nil {
		prev, ok := c.s.responses.get(*req.PreviousResponseID)
		if !ok {
			return &apiError{status: http.StatusBadRequest, Code: "previous_response_not_found", Type: "invalid_request_error", Param: "previous_response_id",
				Message: fmt.Sprintf("Previous response with id '%s' not found.", *req.PreviousResponseID)}
		}
		// The earlier turn is part of this turn's context.
		p.tokens += prev.tokens
		p.h.add(strconv.FormatInt(prev.tokens, 10))
	}
	if req.Instructions != nil {
		p.message("developer", *req.Instructions, 0)
	}
	if err := responseInput(&p, req.Input); err != nil {
		return errInvalid("input", err.Error())
	}
	p.raw(req.Tools)
	p.primeReply()
	pl := makePlan(p, c.d.reasoning, limit, 1)
	if err := c.admit(c.estimate(pl, limit, 1)); err != nil {
		return err
	}
	resp := c.newResponse(req)
	if req.Stream {
		return c.streamResponse(pl, resp, req.Store == nil || *req.Store)
	}
	if err := sleep(c.ctx, c.pace.ttft+c.pace.tokens(pl.completion())); err != nil {
		return err
	}
	c.finishResponse(resp, pl, req.Store == nil || *req.Store)
	return c.writeBody(resp, pl.totals())
}

// responseInput adds the Responses input (a string, or an array of items
// that are messages with string or part-array content, or other items
// such as function call outputs) to the prompt.
func responseInput(p *prompt, raw json.RawMessage) error {
	if raw[0] == '"' {
		return p.content("user", raw)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("expected a string or an array of input items")
	}
	if len(items) == 0 {
		return fmt.Errorf("expected a non-empty array of input items")
	}
	for i, it := range items {
		var m struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(it, &m); err != nil {
			return fmt.Errorf("item %d: expected an object", i)
		}
		if m.Content == nil {
			p.raw(it)
			continue
		}
		if err := p.content(m.Role, m.Content); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

// newResponse is the response as first announced: in progress, no output.
func (c *call) newResponse(req responsesRequest) *responseObject {
	r := &responseObject{
		ID: c.idWith("resp_"), Object: "response", CreatedAt: c.now.Unix(), Status: "in_progress",
		Instructions: req.Instructions, MaxOutputTokens: req.MaxOutputTokens, Model: c.d.Model,
		Output: []any{}, ParallelToolCalls: true, PreviousResponseID: req.PreviousResponseID,
		Store: req.Store == nil || *req.Store, Temperature: 1, ToolChoice: "auto",
		Tools: json.RawMessage("[]"), TopP: 1, Truncation: "disabled",
	}
	if len(req.Tools) > 0 && string(req.Tools) != "null" {
		r.Tools = req.Tools
	}
	r.Text.Format.Type = "text"
	return r
}

// outputItems are the finished items of a plan: a reasoning item when the
// model reasoned, then the assistant message.
func (c *call) outputItems(pl plan) (reasoning *reasoningItem, msg *messageItem) {
	ch := pl.choices[0]
	if ch.reasoning > 0 {
		reasoning = &reasoningItem{ID: c.idWith("rs_"), Type: "reasoning", Summary: []any{}}
	}
	status := "completed"
	if ch.finish == "length" {
		status = "incomplete"
	}
	msg = &messageItem{ID: c.idWith("msg_"), Type: "message", Status: status, Role: "assistant",
		Content: []outputText{{Type: "output_text", Text: choiceText(ch), Annotations: []any{}, Logprobs: []any{}}}}
	return reasoning, msg
}

// finishResponse fills the final status, output and usage and stores the
// response so later turns can continue from it.
func (c *call) finishResponse(resp *responseObject, pl plan, store bool) {
	reasoning, msg := c.outputItems(pl)
	resp.Output = resp.Output[:0]
	if reasoning != nil {
		resp.Output = append(resp.Output, reasoning)
	}
	resp.Output = append(resp.Output, msg)
	resp.Status = "completed"
	if pl.choices[0].finish == "length" {
		resp.Status = "incomplete"
		resp.IncompleteDetails = &incompleteDetails{Reason: "max_output_tokens"}
	}
	u := &responseUsage{InputTokens: pl.prompt, OutputTokens: pl.completion(), TotalTokens: pl.prompt + pl.completion()}
	u.InputTokensDetails.CachedTokens = pl.cached
	u.OutputTokensDetails.ReasoningTokens = pl.reasoning()
	resp.Usage = u
	if store {
		b, _ := json.Marshal(resp) // plain data, cannot fail
		c.s.responses.put(resp.ID, storedResponse{body: b, tokens: u.TotalTokens, input: inputItems(c.input, c.idWith("msg_in_"))})
	}
}

// streamResponse streams typed Responses events; there is no [DONE], the
// stream ends with response.completed (or response.incomplete when the
// output cap was hit).
func (c *call) streamResponse(pl plan, resp *responseObject, store bool) error {
	if err := sleep(c.ctx, c.pace.ttft+c.pace.tokens(pl.reasoning())); err != nil {
		return err
	}
	sse := newSSEWriter(c.ctx, c.w, c.steer)
	sse.start()
	seq := 0
	emit := func(ev responseEvent) error {
		ev.SequenceNumber = seq
		seq++
		return sse.json(ev.Type, ev)
	}
	snapshot := *resp // the announced, in-progress state
	if err := emit(responseEvent{Type: "response.created", Response: &snapshot}); err != nil {
		return err
	}
	if err := emit(responseEvent{Type: "response.in_progress", Response: &snapshot}); err != nil {
		return err
	}
	reasoning, msg := c.outputItems(pl)
	idx := 0
	if reasoning != nil {
		if err := emit(responseEvent{Type: "response.output_item.added", OutputIndex: &idx, Item: reasoning}); err != nil {
			return err
		}
		if err := emit(responseEvent{Type: "response.output_item.done", OutputIndex: &idx, Item: reasoning}); err != nil {
			return err
		}
		idx++
	}
	part0 := 0
	final := msg.Content[0]
	pending := *msg
	pending.Status, pending.Content = "in_progress", []outputText{}
	if err := emit(responseEvent{Type: "response.output_item.added", OutputIndex: &idx, Item: &pending}); err != nil {
		return err
	}
	emptyPart := outputText{Type: "output_text", Annotations: []any{}, Logprobs: []any{}}
	if err := emit(responseEvent{Type: "response.content_part.added", ItemID: msg.ID, OutputIndex: &idx, ContentIndex: &part0, Part: &emptyPart}); err != nil {
		return err
	}
	ch := pl.choices[0]
	chunks := int((ch.visible + tokensPerChunk - 1) / tokensPerChunk)
	cutAt := chunks / 2
	noLogprobs := json.RawMessage("[]")
	var buf []byte
	for i, from := 0, int64(0); from < ch.visible; i, from = i+1, from+tokensPerChunk {
		if c.fault == faultCut && i == cutAt {
			abort()
		}
		to := min(from+tokensPerChunk, ch.visible)
		if i > 0 {
			if err := sleep(c.ctx, c.pace.tokens(to-from)); err != nil {
				return err
			}
		}
		buf = appendWords(buf[:0], ch.seed, from, to)
		delta := string(buf)
		if err := emit(responseEvent{Type: "response.output_text.delta", ItemID: msg.ID, OutputIndex: &idx, ContentIndex: &part0, Delta: &delta, Logprobs: noLogprobs}); err != nil {
			return err
		}
	}
	if c.fault == faultCut {
		abort()
	}
	if err := emit(responseEvent{Type: "response.output_text.done", ItemID: msg.ID, OutputIndex: &idx, ContentIndex: &part0, Text: &final.Text, Logprobs: noLogprobs}); err != nil {
		return err
	}
	if err := emit(responseEvent{Type: "response.content_part.done", ItemID: msg.ID, OutputIndex: &idx, ContentIndex: &part0, Part: &final}); err != nil {
		return err
	}
	if err := emit(responseEvent{Type: "response.output_item.done", OutputIndex: &idx, Item: msg}); err != nil {
		return err
	}
	if c.fault == faultCutBeforeUsage {
		abort()
	}
	c.finishResponse(resp, pl, store)
	terminal := "response.completed"
	if resp.Status == "incomplete" {
		terminal = "response.incomplete"
	}
	c.record(pl.totals())
	return emit(responseEvent{Type: terminal, Response: resp})
}

// getResponse serves GET /responses/{id}.
func (s *Server) getResponse(w http.ResponseWriter, id string) {
	stored, ok := s.responses.get(id)
	if !ok {
		writeError(w, &apiError{status: http.StatusNotFound, Code: "not_found", Type: "invalid_request_error",
			Message: fmt.Sprintf("Response with id '%s' not found.", id)})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(stored.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(stored.body)
}

type storedResponse struct {
	body   []byte // the final response object as sent
	tokens int64  // its total tokens, the context a follow-up turn carries
	// input is the request's input as items (GET …/input_items), in order.
	input []json.RawMessage
}

// inputItems turns a Responses input (a string, or an array of items or
// role/content messages) into items with ids, as input_items lists them.
func inputItems(raw json.RawMessage, idPrefix string) []json.RawMessage {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		raw, _ = json.Marshal([]map[string]any{{"role": "user", "content": text}})
	}
	var items []map[string]any
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	out := make([]json.RawMessage, 0, len(items))
	for i, it := range items {
		if it["type"] == nil {
			it["type"] = "message"
		}
		if s, ok := it["content"].(string); ok { // shorthand: one input_text part
			it["content"] = []map[string]any{{"type": "input_text", "text": s}}
		}
		if it["type"] == "message" && it["status"] == nil {
			it["status"] = "completed"
		}
		if it["id"] == nil {
			it["id"] = fmt.Sprintf("%s%d", idPrefix, i)
		}
		b, _ := json.Marshal(it) // decoded JSON, cannot fail
		out = append(out, b)
	}
	return out
}

// deleteResponse serves DELETE /responses/{id}.
func (s *Server) deleteResponse(w http.ResponseWriter, id string) {
	if !s.responses.remove(id) {
		writeError(w, errResponseNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
}

// cancelResponse serves POST /responses/{id}/cancel. The simulator
// answers every response at once (no background mode), so a stored
// response is never cancellable, as for a response created without
// background: true on a real resource.
func (s *Server) cancelResponse(w http.ResponseWriter, id string) {
	if _, ok := s.responses.get(id); !ok {
		writeError(w, errResponseNotFound(id))
		return
	}
	writeError(w, &apiError{status: http.StatusBadRequest, Code: "invalid_request_error", Type: "invalid_request_error",
		Message: "Only responses created with background mode can be cancelled."})
}

// listInputItems serves GET /responses/{id}/input_items: the input
// items, newest first unless order=asc, after= and limit= (default 20,
// 1-100) paginate.
func (s *Server) listInputItems(w http.ResponseWriter, r *http.Request, id string) {
	stored, ok := s.responses.get(id)
	if !ok {
		writeError(w, errResponseNotFound(id))
		return
	}
	q := r.URL.Query()
	items := slices.Clone(stored.input)
	if q.Get("order") != "asc" {
		slices.Reverse(items)
	}
	if after := q.Get("after"); after != "" {
		for i, it := range items {
			var v struct{ ID string }
			if json.Unmarshal(it, &v) == nil && v.ID == after {
				items = items[i+1:]
				break
			}
		}
	}
	limit := 20
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			writeError(w, errInvalid("limit", "Invalid 'limit': expected an integer between 1 and 100."))
			return
		}
		limit = n
	}
	more := len(items) > limit
	items = items[:min(limit, len(items))]
	list := map[string]any{"object": "list", "data": items, "has_more": more, "first_id": nil, "last_id": nil}
	if len(items) > 0 {
		var first, last struct{ ID string }
		_ = json.Unmarshal(items[0], &first)
		_ = json.Unmarshal(items[len(items)-1], &last)
		list["first_id"], list["last_id"] = first.ID, last.ID
	}
	writeJSON(w, http.StatusOK, list)
}

func errResponseNotFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, Code: "not_found", Type: "invalid_request_error",
		Message: fmt.Sprintf("Response with id '%s' not found.", id)}
}

// responseStore remembers the last max responses this instance created, so
// previous_response_id works only against the instance that made the
// response, as with a real resource. Oldest entries are evicted first.
type responseStore struct {
	mu   sync.Mutex
	max  int
	m    map[string]storedResponse
	ring []string // insertion order; ring[next] is the oldest once full
	next int
}

func newResponseStore(max int) *responseStore {
	return &responseStore{max: max, m: make(map[string]storedResponse)}
}

func (s *responseStore) put(id string, r storedResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max == 0 {
		return
	}
	if len(s.ring) < s.max {
		s.ring = append(s.ring, id)
	} else {
		delete(s.m, s.ring[s.next])
		s.ring[s.next] = id
		s.next = (s.next + 1) % s.max
	}
	s.m[id] = r
}

// remove forgets id; false when it was not stored.
func (s *responseStore) remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	delete(s.m, id) // its ring slot stays; put evicts an absent id harmlessly
	return ok
}

func (s *responseStore) get(id string) (storedResponse, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[id]
	return r, ok
}
