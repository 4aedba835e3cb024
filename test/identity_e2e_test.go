package test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/foundry-gateway/gateway/internal/azurite"
)

// Issue #3 (identity), end to end through processes: scoped API keys
// (models, regions, output and n caps, the batch class), the admin keys
// API (create, rotate with an overlap, revoke), revocation reaching a
// second instance on the same store within the key cache TTL, JWT callers
// mapped to a scope by identity rules, and secrets that are shown once.

// idpAudience is the audience the gateway accepts from the test issuer.
const idpAudience = "api://foundry-gateway-e2e"

// TestIdentityE2E runs scope, policy, rotation, admin refusal and JWT
// checks against one stack, then checks every admin API answer and the
// processes' output for secrets.
func TestIdentityE2E(t *testing.T) {
	t.Parallel()
	us := newInjector(t) // an eastus backend, counting what reaches it
	idp := startIssuer(t)
	sc := newSecretCheck()
	var s *stack
	// Registered before the stack, so it runs after its processes stopped.
	t.Cleanup(func() {
		if s != nil {
			sc.assertOutput(t, map[string]*stack{"identity": s})
		}
	})
	s = startStack(t, stackOptions{
		// geo prefers the eastus backend (priority 1), so only the region
		// scope keeps a caller in swedencentral.
		extraBackends: fmt.Sprintf(`  - { name: sim-us, url: "%s", region: eastus, auth: { none: true } }`, us.srv.URL),
		extraModels: `  geo:
    targets:
      - { backend: sim-us, deployment: gpt-4o-mini, priority: 1 }
      - { backend: sim-paygo, deployment: gpt-4o-mini, priority: 2 }
  capped:
    targets: [ { backend: sim-paygo, deployment: gpt-4o-mini } ]
    policy: { maxOutputTokens: 12, maxN: 1 }`,
		extraTop: fmt.Sprintf(`identity:
  issuers: [{ issuer: "%s", audience: "%s" }]
  rules:
    - { claims: { roles: Gateway.Admin }, team: platform, app: ops, admin: true }
    - { claims: { roles: Gateway.User }, team: research, appFromClaim: azp, models: [o4-mini] }`, idp.srv.URL, idpAudience),
		extraKeys: [][]string{{"--team", "eu", "--app", "scoped", "--models", "geo", "--regions", "swedencentral"}},
	})
	us.point(s.SimURL)
	sc.known("harness admin key", s.Key)
	sc.known("scoped key", s.ExtraKeys[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The subtests run in parallel (the rotation waits out its overlap);
	// "calls" returns when all of them are done.
	t.Run("calls", func(t *testing.T) {
		t.Run("scope", func(t *testing.T) {
			t.Parallel()
			testScope(ctx, t, s, us, s.ExtraKeys[0])
		})
		t.Run("policy", func(t *testing.T) {
			t.Parallel()
			testPolicy(ctx, t, s, sc)
		})
		t.Run("rotation", func(t *testing.T) {
			t.Parallel()
			testRotation(t, s, sc)
		})
		t.Run("non-admin", func(t *testing.T) {
			t.Parallel()
			testAdminRefused(t, s, sc, s.ExtraKeys[0])
		})
		t.Run("jwt", func(t *testing.T) {
			t.Parallel()
			testJWT(ctx, t, s, idp, sc)
		})
	})

	t.Run("secrets", func(t *testing.T) {
		k := sc.create(t, s.URL, s.Key, `{"team":"research","app":"secrets","scope":{"models":["gpt-4o-mini"]}}`)
		if !strings.HasPrefix(k.Key, k.Prefix+".") || k.Prefix != "fgw-"+k.ID {
			t.Errorf("create: key %.8s…, prefix %q, id %q: want the key to start with prefix fgw-<id>.", k.Key, k.Prefix, k.ID)
		}
		admin := s.URL + "/gateway/admin/keys"
		for _, tt := range []struct {
			name, method, url, body string
			want                    int
		}{
			{"list", http.MethodGet, admin, "", http.StatusOK},
			{"list team", http.MethodGet, admin + "?team=research", "", http.StatusOK},
			{"get", http.MethodGet, admin + "/" + k.ID, "", http.StatusOK},
			{"get by prefix", http.MethodGet, admin + "/" + k.Prefix, "", http.StatusOK},
			{"unknown id", http.MethodGet, admin + "/0123456789ab", "", http.StatusNotFound},
			{"unknown model in scope", http.MethodPost, admin, `{"team":"research","app":"x","scope":{"models":["nope"]}}`, http.StatusBadRequest},
			{"unknown field", http.MethodPost, admin, `{"team":"research","app":"x","secret":"mine"}`, http.StatusBadRequest},
			{"bad overlap", http.MethodPost, admin + "/" + k.ID + "/rotate", `{"overlap":"soon"}`, http.StatusBadRequest},
			// An operator pastes the whole key where its id belongs.
			{"whole key as id", http.MethodGet, admin + "/" + k.Key, "", http.StatusBadRequest},
			{"whole key as id, revoke", http.MethodPost, admin + "/" + k.Key + "/revoke", "", http.StatusBadRequest},
		} {
			t.Run(tt.name, func(t *testing.T) {
				code, b := sc.admin(t, tt.method, tt.url, s.Key, tt.body)
				if code != tt.want {
					t.Fatalf("%s %s: got %v %s, want %v", tt.method, tt.url, code, b, tt.want)
				}
				if code >= 400 {
					wantErrorBody(t, b, "")
				}
			})
		}
		var list struct {
			Object string           `json:"object"`
			Data   []map[string]any `json:"data"`
		}
		_, b := sc.admin(t, http.MethodGet, admin, s.Key, "")
		if err := json.Unmarshal(b, &list); err != nil || list.Object != "list" || len(list.Data) < 3 {
			t.Errorf("list: %v %s: want an OpenAI list of the keys", err, b)
		}
		for _, k := range list.Data {
			if _, ok := k["key"]; ok {
				t.Errorf("list entry %v has a key field", k["id"])
			}
		}
		if lines := s.GW.LogLines("admin: key created"); !slices.ContainsFunc(lines, func(m map[string]any) bool { return m["key_id"] == k.ID }) {
			t.Errorf("no \"admin: key created\" log line with key_id %s in %d lines", k.ID, len(lines))
		}
		sc.assertBodies(t)
	})
}

// testScope: a key limited to model geo and region swedencentral is
// refused other models, sees only geo, and is never served in eastus,
// where an unrestricted key is served.
func testScope(ctx context.Context, t *testing.T, s *stack, us *injector, scopedKey string) {
	scoped := keyClient(s, scopedKey)
	_, err := scoped.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "hi"))
	wantAPIError(t, err, http.StatusForbidden, "model_not_allowed", "model")

	page, err := scoped.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"geo"}) {
		t.Errorf("models of the scoped key: got %v, want [geo]", ids)
	}
	all, err := keyClient(s, s.Key).Models.List(ctx)
	if err != nil || len(all.Data) < 4 {
		t.Errorf("models of the unrestricted key: got %d (%v), want every alias", len(all.Data), err)
	}

	// geo prefers eastus: an unrestricted key is served there.
	backendOf := func(key string, i int) string {
		t.Helper()
		var resp *http.Response
		_, err := keyClient(s, key).Chat.Completions.New(ctx, chatParams("geo", fmt.Sprintf("where am I served, %d?", i)),
			option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("geo call %d: %v", i, err)
		}
		return resp.Header.Get("X-Gateway-Backend")
	}
	inUS := 0
	for i := range 5 {
		if backendOf(s.Key, i) == "sim-us" {
			inUS++
		}
	}
	if inUS == 0 {
		t.Fatal("the unrestricted key was never served by sim-us (eastus): the region check below proves nothing")
	}
	before := us.hits.Load()
	served := map[string]int{}
	for i := range 50 {
		served[backendOf(scopedKey, i)]++
	}
	t.Logf("unrestricted key: %d of 5 calls in eastus; scoped key: %v", inUS, served)
	if served["sim-paygo"] != 50 {
		t.Errorf("scoped key (regions [swedencentral]) served by %v, want all 50 by sim-paygo (swedencentral)", served)
	}
	if n := us.hits.Load() - before; n != 0 {
		t.Errorf("the eastus backend got %d requests while the scoped key called, want 0", n)
	}
}

// testPolicy: output-token caps clamp (header, usage) or refuse, n caps
// refuse, and the batch class may only queue jobs. Its keys are made
// through the admin API, with the scope's JSON names.
func testPolicy(ctx context.Context, t *testing.T, s *stack, sc *secretCheck) {
	clamp := sc.create(t, s.URL, s.Key, `{"team":"research","app":"clamp","scope":{"max_output_tokens":16}}`)
	reject := sc.create(t, s.URL, s.Key, `{"team":"research","app":"strict","scope":{"max_output_tokens":16,"over_cap":"reject"}}`)
	single := sc.create(t, s.URL, s.Key, `{"team":"research","app":"single","scope":{"max_n":1}}`)
	batch := sc.create(t, s.URL, s.Key, `{"team":"research","app":"nightly","scope":{"class":"batch"}}`)

	// A prompt the simulator answers at length (its length is a
	// deterministic function of the prompt).
	var prompt string
	for i := 0; prompt == ""; i++ {
		p := fmt.Sprintf("Tell me a long story, take %d.", i)
		r, err := keyClient(s, s.Key).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", p))
		if err != nil {
			t.Fatal(err)
		}
		if r.Usage.CompletionTokens > 64 {
			prompt = p
			t.Logf("uncapped, the prompt gets %d completion tokens", r.Usage.CompletionTokens)
		} else if i == 20 {
			t.Fatal("no prompt with a long answer")
		}
	}
	params := func(set func(*openai.ChatCompletionNewParams)) openai.ChatCompletionNewParams {
		p := chatParams("gpt-4o-mini", prompt)
		set(&p)
		return p
	}

	t.Run("clamp", func(t *testing.T) {
		for _, tt := range []struct {
			name      string
			set       func(*openai.ChatCompletionNewParams)
			maxTokens int64
			header    string // X-Gateway-Clamped, "" = none
		}{
			{"max_tokens above", func(p *openai.ChatCompletionNewParams) { p.MaxTokens = openai.Int(500) }, 16, "max_tokens=16"},
			{"max_completion_tokens above", func(p *openai.ChatCompletionNewParams) { p.MaxCompletionTokens = openai.Int(500) }, 16, "max_completion_tokens=16"},
			{"no limit", func(*openai.ChatCompletionNewParams) {}, 16, "max_completion_tokens=16"},
			{"below the cap", func(p *openai.ChatCompletionNewParams) { p.MaxCompletionTokens = openai.Int(8) }, 8, ""},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var resp *http.Response
				r, err := keyClient(s, clamp.Key).Chat.Completions.New(ctx, params(tt.set), option.WithResponseInto(&resp))
				if err != nil {
					t.Fatal(err)
				}
				if got := r.Usage.CompletionTokens; got > tt.maxTokens || got == 0 {
					t.Errorf("completion_tokens %d, want 1..%d", got, tt.maxTokens)
				}
				if r.Choices[0].FinishReason != "length" {
					t.Errorf("finish_reason %q, want length (the cap cut the answer)", r.Choices[0].FinishReason)
				}
				if got := resp.Header.Get("X-Gateway-Clamped"); got != tt.header {
					t.Errorf("X-Gateway-Clamped: got %q, want %q", got, tt.header)
				}
			})
		}
	})

	// A model's policy caps every caller; a scope only tightens it.
	t.Run("model policy", func(t *testing.T) {
		for _, tt := range []struct {
			name, key string
			header    string
		}{
			{"unscoped key gets the model's cap", s.Key, "max_tokens=12"},
			{"the lower cap wins (model 12, key 16)", clamp.Key, "max_tokens=12"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var resp *http.Response
				p := chatParams("capped", prompt)
				p.MaxTokens = openai.Int(500)
				r, err := keyClient(s, tt.key).Chat.Completions.New(ctx, p, option.WithResponseInto(&resp))
				if err != nil {
					t.Fatal(err)
				}
				if got := r.Usage.CompletionTokens; got > 12 || got == 0 {
					t.Errorf("completion_tokens %d, want 1..12", got)
				}
				if got := resp.Header.Get("X-Gateway-Clamped"); got != tt.header {
					t.Errorf("X-Gateway-Clamped: got %q, want %q", got, tt.header)
				}
			})
		}
		p := chatParams("capped", prompt)
		p.N = openai.Int(2)
		_, err := keyClient(s, s.Key).Chat.Completions.New(ctx, p)
		wantAPIError(t, err, http.StatusBadRequest, "parameter_above_limit", "n")
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name, key string
			set       func(*openai.ChatCompletionNewParams)
			status    int
			code      string
			param     string
		}{
			{"reject max_tokens", reject.Key, func(p *openai.ChatCompletionNewParams) { p.MaxTokens = openai.Int(500) },
				http.StatusBadRequest, "parameter_above_limit", "max_tokens"},
			{"reject max_completion_tokens", reject.Key, func(p *openai.ChatCompletionNewParams) { p.MaxCompletionTokens = openai.Int(17) },
				http.StatusBadRequest, "parameter_above_limit", "max_completion_tokens"},
			{"reject at the cap", reject.Key, func(p *openai.ChatCompletionNewParams) { p.MaxTokens = openai.Int(16) }, http.StatusOK, "", ""},
			{"max-n 1, n 2", single.Key, func(p *openai.ChatCompletionNewParams) { p.N = openai.Int(2) },
				http.StatusBadRequest, "parameter_above_limit", "n"},
			{"max-n 1, n 1", single.Key, func(p *openai.ChatCompletionNewParams) { p.N = openai.Int(1) }, http.StatusOK, "", ""},
			{"batch class, sync", batch.Key, func(*openai.ChatCompletionNewParams) {},
				http.StatusForbidden, "priority_class_forbidden", ""},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := keyClient(s, tt.key).Chat.Completions.New(ctx, params(tt.set))
				if tt.status == http.StatusOK {
					if err != nil {
						t.Fatalf("got %v, want 200", err)
					}
					return
				}
				wantAPIError(t, err, tt.status, tt.code, tt.param)
			})
		}
	})

	t.Run("batch class, async", func(t *testing.T) {
		code, _, b := jcall(t, http.MethodPost, s.URL+"/openai/v1/chat/completions", batch.Key, chatBody(prompt),
			map[string]string{"Prefer": "respond-async"})
		var job jobJSON
		if code != http.StatusAccepted || json.Unmarshal(b, &job) != nil || job.ID == "" {
			t.Fatalf("Prefer: respond-async: got %v %s, want 202 with a job", code, b)
		}
	})
}

// testRotation: a key rotated through the admin API with a 3 s overlap
// works beside its replacement until the overlap ends, then only the
// replacement works and the old key's 401 names the replacement's prefix.
func testRotation(t *testing.T, s *stack, sc *secretCheck) {
	const overlap = 3 * time.Second
	admin := s.URL + "/gateway/admin/keys"
	old := sc.create(t, s.URL, s.Key, `{"team":"research","app":"rotating","scope":{"models":["gpt-4o-mini","o4-mini"]}}`)
	if st, _ := chatStatus(t, s.URL, old.Key, sc); st != http.StatusOK {
		t.Fatalf("new key: got %v, want 200", st)
	}
	// A job queued with the old key stays the caller's after the rotation.
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", old.Key,
		`{"model":"gpt-4o-mini","max_tokens":3,"messages":[{"role":"user","content":"queued before rotation"}]}`,
		map[string]string{"Prefer": "respond-async"})
	jb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sc.record("job submitted before rotation", jb)
	var job struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(jb, &job) != nil || job.ID == "" {
		t.Fatalf("submit with the old key: got %v %s, want 202", resp.StatusCode, jb)
	}
	code, b := sc.admin(t, http.MethodPost, admin+"/"+old.ID+"/rotate", s.Key, `{"overlap":"3s"}`)
	rotated := time.Now()
	var nk createdKey
	if code != http.StatusCreated || json.Unmarshal(b, &nk) != nil || nk.Key == "" || nk.Replaces == nil {
		t.Fatalf("rotate: got %v %s, want 201 with the new key and the one it replaces", code, b)
	}
	sc.shown(nk.Key, "rotated key")
	if nk.Replaces.ID != old.ID || nk.Replaces.RotatedTo != nk.ID || nk.RotatedFrom != old.ID || nk.Replaces.Key != "" {
		t.Errorf("rotate: new %s (from %q), replaces %+v: want old %s rotated to the new id, without its secret",
			nk.ID, nk.RotatedFrom, nk.Replaces, old.ID)
	}
	if !slices.Equal(nk.Scope.Models, old.Scope.Models) || nk.Team != old.Team || nk.App != old.App {
		t.Errorf("rotate: new key %s/%s %v, want the old key's team, app and scope %s/%s %v",
			nk.Team, nk.App, nk.Scope.Models, old.Team, old.App, old.Scope.Models)
	}
	end := nk.Replaces.ExpiresAt
	if d := end.Sub(rotated); d < overlap-time.Second || d > overlap+time.Second {
		t.Errorf("old key expires_at %v, %v after the rotate answer; want about the overlap %v", end, d, overlap)
	}

	// During the overlap both keys work: at once, and after the 1 s key
	// cache TTL, shortly before the end (that fresh lookup is cached, but
	// must still end with the overlap, not a TTL later).
	for _, at := range []time.Time{rotated, end.Add(-600 * time.Millisecond)} {
		time.Sleep(time.Until(at))
		for what, k := range map[string]string{"old": old.Key, "new": nk.Key} {
			st, b := chatStatus(t, s.URL, k, sc)
			switch {
			case st == http.StatusOK:
			case what == "old" && !time.Now().Before(end):
				t.Logf("old key %v into the overlap: answered after its end, cannot judge", at.Sub(rotated))
			default:
				t.Errorf("%s key %v into the overlap: got %v %s, want 200", what, at.Sub(rotated).Round(time.Millisecond), st, b)
			}
		}
	}
	time.Sleep(time.Until(end.Add(100 * time.Millisecond)))
	st, msg := chatStatus(t, s.URL, old.Key, sc)
	if st != http.StatusUnauthorized {
		t.Fatalf("old key after the overlap: got %v %s, want 401", st, msg)
	}
	if e := wantErrorBody(t, []byte(msg), "invalid_api_key"); !strings.Contains(e.Error.Message, nk.Prefix) {
		t.Errorf("old key's 401 %q does not name the replacement %s", e.Error.Message, nk.Prefix)
	}
	if st, b := chatStatus(t, s.URL, nk.Key, sc); st != http.StatusOK {
		t.Errorf("new key after the overlap: got %v %s, want 200", st, b)
	}
	jr, err := http.NewRequest(http.MethodGet, s.URL+"/jobs/"+job.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	jr.Header.Set("api-key", nk.Key)
	if jresp, err := http.DefaultClient.Do(jr); err != nil {
		t.Fatal(err)
	} else {
		jb, _ := io.ReadAll(jresp.Body)
		jresp.Body.Close()
		sc.record("job read with the new key", jb)
		if jresp.StatusCode != http.StatusOK {
			t.Errorf("job queued with the old key, read with the new one: got %v %s, want 200 (the key's lineage owns it)", jresp.StatusCode, jb)
		}
	}

	var got createdKey
	code, b = sc.admin(t, http.MethodGet, admin+"/"+old.ID, s.Key, "")
	if code != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Status != "expired" || got.RotatedTo != nk.ID {
		t.Errorf("GET old key: got %v %s, want 200 expired, rotated_to %s", code, b, nk.ID)
	}
	if code, b := sc.admin(t, http.MethodPost, admin+"/"+old.ID+"/rotate", s.Key, `{}`); code != http.StatusConflict {
		t.Errorf("rotating the old key again: got %v %s, want 409", code, b)
	} else {
		wantErrorBody(t, b, "conflict")
	}
	code, b = sc.admin(t, http.MethodDelete, admin+"/"+nk.ID, s.Key, "")
	if code != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Status != "revoked" {
		t.Fatalf("DELETE new key: got %v %s, want 200 revoked", code, b)
	}
	if st, b := chatStatus(t, s.URL, nk.Key, sc); st != http.StatusUnauthorized || !strings.Contains(b, "revoked") {
		t.Errorf("new key after DELETE on the same instance: got %v %s, want 401 revoked at once", st, b)
	}
}

// testAdminRefused: a key without the admin scope gets 403 from every
// admin keys route, and its attempts change nothing.
func testAdminRefused(t *testing.T, s *stack, sc *secretCheck, key string) {
	admin := s.URL + "/admin/keys"
	target := sc.create(t, s.URL, s.Key, `{"team":"research","app":"target"}`).ID
	for _, tt := range []struct{ method, url, body string }{
		{http.MethodGet, admin, ""},
		{http.MethodGet, s.URL + "/gateway/admin/keys/" + target, ""},
		{http.MethodPost, s.URL + "/gateway/admin/keys", `{"team":"eu","app":"escalate","scope":{"admin":true}}`},
		{http.MethodPost, admin + "/" + target + "/rotate", `{}`},
		{http.MethodPost, admin + "/" + target + "/revoke", ""},
		{http.MethodDelete, admin + "/" + target, ""},
	} {
		code, b := sc.admin(t, tt.method, tt.url, key, tt.body)
		if code != http.StatusForbidden {
			t.Errorf("%s %s with a non-admin key: got %v %s, want 403", tt.method, tt.url, code, b)
			continue
		}
		wantErrorBody(t, b, "admin_forbidden")
	}
	if code, b := sc.admin(t, http.MethodGet, admin, "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /admin/keys without a key: got %v %s, want 401", code, b)
	}
	var k createdKey
	if code, b := sc.admin(t, http.MethodGet, admin+"/"+target, s.Key, ""); code != http.StatusOK || json.Unmarshal(b, &k) != nil ||
		k.Status != "active" || k.RotatedTo != "" {
		t.Errorf("the target key after the refused calls: got %v %s, want it active and not rotated", code, b)
	}
}

// testJWT: tokens of a local OIDC issuer are mapped by claims; the admin
// role may use the admin API, the user role only its model.
func testJWT(ctx context.Context, t *testing.T, s *stack, idp *oidcIssuer, sc *secretCheck) {
	adminTok := idp.token(t, jwt.MapClaims{"sub": "ops-1", "roles": []string{"Gateway.Admin"}})
	userTok := idp.token(t, jwt.MapClaims{"sub": "app-1", "azp": "notebook", "roles": []string{"Gateway.User", "Other"}})
	strangerTok := idp.token(t, jwt.MapClaims{"sub": "app-2", "roles": []string{"Somebody.Else"}})
	// Tokens are credentials too: no answer or log line may carry them.
	sc.known("admin JWT", adminTok)
	sc.known("user JWT", userTok)
	sc.known("unmapped JWT", strangerTok)

	user := keyClient(s, userTok)
	_, err := user.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "hi"))
	wantAPIError(t, err, http.StatusForbidden, "model_not_allowed", "model")
	if r, err := user.Chat.Completions.New(ctx, chatParams("o4-mini", "hi")); err != nil || r.Usage.TotalTokens == 0 {
		t.Errorf("user token, o4-mini: %v, want 200 with usage", err)
	}
	if page, err := user.Models.List(ctx); err != nil || len(page.Data) != 1 || page.Data[0].ID != "o4-mini" {
		t.Errorf("models of the user token: %v %v, want [o4-mini]", page, err)
	}
	_, err = keyClient(s, strangerTok).Chat.Completions.New(ctx, chatParams("o4-mini", "hi"))
	wantAPIError(t, err, http.StatusForbidden, "unmapped_identity", "")

	code, b := sc.admin(t, http.MethodGet, s.URL+"/gateway/admin/keys", userTok, "")
	if code != http.StatusForbidden {
		t.Errorf("user token, GET /gateway/admin/keys: got %v %s, want 403", code, b)
	} else {
		wantErrorBody(t, b, "admin_forbidden")
	}
	code, b = sc.admin(t, http.MethodGet, s.URL+"/gateway/admin/keys", adminTok, "")
	var list struct {
		Object string       `json:"object"`
		Data   []createdKey `json:"data"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &list) != nil || list.Object != "list" {
		t.Fatalf("admin token, GET /gateway/admin/keys: got %v %s, want 200 with the list", code, b)
	}
	if !slices.ContainsFunc(list.Data, func(k createdKey) bool { return k.ID == keyID(t, s.Key) }) {
		t.Errorf("admin token: the list of %d keys lacks the harness key", len(list.Data))
	}
}

// TestIdentityRevokeAcrossInstances: two gateways on one Azurite store
// (same table prefix). Keys made on either work on both; a key revoked
// through one instance's admin API is refused there at once and on the
// other once its key cache entry ends (auth.keyCacheTTL).
func TestIdentityRevokeAcrossInstances(t *testing.T) {
	t.Parallel()
	const ttl, slack = 2 * time.Second, time.Second
	az := azurite.Start(t)
	sc := newSecretCheck()
	var a, b *stack
	t.Cleanup(func() {
		if a != nil && b != nil {
			sc.assertOutput(t, map[string]*stack{"A": a, "B": b})
		}
	})
	o := stackOptions{
		store: `store: { kind: azure-tables, connection: GatewayTables, tablePrefix: idrev }`,
		auth:  fmt.Sprintf("auth: { keyCacheTTL: %v }", ttl),
		env:   []string{"GatewayTables=" + az.ConnectionString()},
	}
	a = startStack(t, o)
	b = startStack(t, o)
	sc.known("A's harness key", a.Key)
	sc.known("B's harness key", b.Key)

	ka := sc.create(t, a.URL, a.Key, `{"team":"research","app":"made-on-a"}`)
	kb := sc.create(t, b.URL, b.Key, `{"team":"research","app":"made-on-b"}`)
	for _, k := range []struct{ what, key string }{{"A's key", ka.Key}, {"B's key", kb.Key}, {"A's CLI key", a.Key}} {
		for name, gw := range map[string]*stack{"A": a, "B": b} {
			if st, body := chatStatus(t, gw.URL, k.key, sc); st != http.StatusOK {
				t.Fatalf("%s on %s: got %v %s, want 200", k.what, name, st, body)
			}
		}
	}
	// Warm both caches just before the revoke.
	for name, gw := range map[string]*stack{"A": a, "B": b} {
		if st, body := chatStatus(t, gw.URL, ka.Key, sc); st != http.StatusOK {
			t.Fatalf("warm-up on %s: got %v %s, want 200", name, st, body)
		}
	}
	code, body := sc.admin(t, http.MethodPost, a.URL+"/gateway/admin/keys/"+ka.ID+"/revoke", a.Key, "")
	revoked := time.Now()
	var got createdKey
	if code != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Status != "revoked" || got.RevokedAt.IsZero() {
		t.Fatalf("revoke on A: got %v %s, want 200 revoked with revoked_at", code, body)
	}
	if st, body := chatStatus(t, a.URL, ka.Key, sc); st != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("A right after its revoke: got %v %s, want 401 revoked (A drops its cached lookup)", st, body)
	}
	servedOnB := 0
	var took time.Duration
	for {
		st, body := chatStatus(t, b.URL, ka.Key, sc)
		if st == http.StatusUnauthorized {
			took = time.Since(revoked)
			wantErrorBody(t, []byte(body), "invalid_api_key")
			break
		}
		if st != http.StatusOK {
			t.Fatalf("B after the revoke: got %v %s, want 200 (cached) or 401", st, body)
		}
		servedOnB++
		if time.Since(revoked) > ttl+5*time.Second {
			t.Fatalf("B still serves the revoked key %v after the revoke (keyCacheTTL %v)", time.Since(revoked), ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("revoke on A reached B after %v (keyCacheTTL %v); B served the key %d more times from its cache",
		took.Round(time.Millisecond), ttl, servedOnB)
	if took > ttl+slack {
		t.Errorf("B refused the revoked key %v after the revoke, want within keyCacheTTL %v + %v", took, ttl, slack)
	}
	// B's admin API reads the same row; B's key is untouched.
	code, body = sc.admin(t, http.MethodGet, b.URL+"/gateway/admin/keys/"+ka.ID, b.Key, "")
	if code != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Status != "revoked" {
		t.Errorf("GET on B: got %v %s, want the key revoked", code, body)
	}
	for name, gw := range map[string]*stack{"A": a, "B": b} {
		if st, body := chatStatus(t, gw.URL, kb.Key, sc); st != http.StatusOK {
			t.Errorf("B's key on %s after the other key's revoke: got %v %s, want 200", name, st, body)
		}
	}
	sc.assertBodies(t)
}

// createdKey is a key as the admin API shows it (Key only when created).
type createdKey struct {
	Key    string `json:"key"`
	ID     string `json:"id"`
	Prefix string `json:"prefix"`
	Team   string `json:"team"`
	App    string `json:"app"`
	Scope  struct {
		Models  []string `json:"models"`
		Regions []string `json:"regions"`
	} `json:"scope"`
	Status      string      `json:"status"`
	ExpiresAt   time.Time   `json:"expires_at"`
	RevokedAt   time.Time   `json:"revoked_at"`
	RotatedTo   string      `json:"rotated_to"`
	RotatedFrom string      `json:"rotated_from"`
	Replaces    *createdKey `json:"replaces"`
}

// secretCheck records the API keys of a test and every admin API answer,
// and checks that a secret appears only in the one answer that made it
// and never, nor its SHA-256 (the stored hash), in process output.
type secretCheck struct {
	mu      sync.Mutex
	secrets map[string]string // secret → what
	shownIn map[string]int    // secret → index in answers of the answer that made it
	answers []answer
}

type answer struct {
	what string
	body string
}

func newSecretCheck() *secretCheck {
	return &secretCheck{secrets: map[string]string{}, shownIn: map[string]int{}}
}

// known adds a key that no answer may show (made with the CLI).
func (c *secretCheck) known(what, secret string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.secrets[secret] = what
}

// shown adds secret as made by the last recorded answer.
func (c *secretCheck) shown(secret, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.answers) - 1; i >= 0; i-- {
		if strings.Contains(c.answers[i].body, secret) {
			c.secrets[secret], c.shownIn[secret] = what, i
			return
		}
	}
	c.secrets[secret], c.shownIn[secret] = what, -1
}

// admin sends an admin API request (key "" = none) and records the answer.
func (c *secretCheck) admin(t *testing.T, method, url, key, body string) (int, []byte) {
	t.Helper()
	code, _, b := jcall(t, method, url, key, body, nil)
	c.record(method+" "+url, b)
	return code, b
}

func (c *secretCheck) record(what string, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answers = append(c.answers, answer{what: what, body: string(body)})
}

// create makes a key with POST <base>/gateway/admin/keys as adminKey.
func (c *secretCheck) create(t *testing.T, base, adminKey, body string) createdKey {
	t.Helper()
	code, b := c.admin(t, http.MethodPost, base+"/gateway/admin/keys", adminKey, body)
	var k createdKey
	if code != http.StatusCreated || json.Unmarshal(b, &k) != nil || k.Key == "" || k.ID == "" {
		t.Fatalf("POST /gateway/admin/keys %s: got %v %s, want 201 with the key", body, code, b)
	}
	c.shown(k.Key, "admin-API key "+k.ID)
	return k
}

// assertBodies checks every recorded answer: a secret only, and once, in
// the answer that made it; no stored hash anywhere.
func (c *secretCheck) assertBodies(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.answers {
		for secret, what := range c.secrets {
			_, part, _ := strings.Cut(secret, ".")
			want := 0
			if idx, ok := c.shownIn[secret]; ok && idx == i {
				want = 1
			}
			if n := strings.Count(a.body, part); n != want {
				t.Errorf("answer to %s shows the %s %d times, want %d: %s", a.what, what, n, want, a.body)
			}
			if strings.Contains(a.body, sha256Hex(secret)) {
				t.Errorf("answer to %s contains the SHA-256 of the %s: %s", a.what, what, a.body)
			}
		}
	}
	t.Logf("%d admin API answers and inference errors checked for %d secrets", len(c.answers), len(c.secrets))
}

// assertOutput checks the stacks' process output (call it once they stopped).
func (c *secretCheck) assertOutput(t *testing.T, stacks map[string]*stack) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	lc := newLeakCheck()
	for name, s := range stacks {
		lc.watchStack(name, s)
	}
	for secret, what := range c.secrets {
		lc.forbidKey(t, what, secret)
		lc.forbid(t, what+" SHA-256", sha256Hex(secret))
	}
	lc.assert(t)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// chatStatus sends a tiny chat with key; error answers are recorded for
// the secrets check. It returns the status and the body.
func chatStatus(t *testing.T, base, key string, sc *secretCheck) (int, string) {
	t.Helper()
	code, _, b := jcall(t, http.MethodPost, base+"/openai/v1/chat/completions", key,
		`{"model":"gpt-4o-mini","max_tokens":2,"messages":[{"role":"user","content":"ping"}]}`, nil)
	if code != http.StatusOK {
		sc.record("chat", b)
	}
	return code, string(b)
}

// keyClient is an OpenAI client of the gateway's v1 API with key (an API
// key or a JWT).
func keyClient(s *stack, key string) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(s.URL+"/openai/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	return &c
}

// wantAPIError checks that err is an OpenAI error with status, code and
// param ("" = none).
func wantAPIError(t *testing.T, err error, status int, code, param string) {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an OpenAI error %d %s", err, status, code)
	}
	if e.StatusCode != status || e.Code != code || e.Param != param || e.Message == "" || e.Type == "" {
		t.Errorf("got %d code %q param %q type %q message %q, want %d %q param %q with a type and message",
			e.StatusCode, e.Code, e.Param, e.Type, e.Message, status, code, param)
	}
}

// wantErrorBody parses an OpenAI error body and checks its code ("" = any).
func wantErrorBody(t *testing.T, b []byte, code string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == "" {
		t.Fatalf("body %s is not the OpenAI error shape (%v)", b, err)
	}
	if code != "" && e.Error.Code != code {
		t.Errorf("error code %q, want %q: %s", e.Error.Code, code, b)
	}
	return e
}

// oidcIssuer is a local OIDC issuer: discovery document, JWKS with one
// RSA key, and RS256 tokens signed with it.
type oidcIssuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

const issuerKID = "e2e-1"

func startIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	o := &oidcIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": o.srv.URL, "jwks_uri": o.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		b64 := base64.RawURLEncoding.EncodeToString
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": issuerKID, "use": "sig", "alg": "RS256",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	o.srv = httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(o.srv.Close)
	return o
}

// token signs claims with the issuer, audience and a 10-minute lifetime added.
func (o *oidcIssuer) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": o.srv.URL, "aud": idpAudience, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = issuerKID
	s, err := tok.SignedString(o.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
