package safety

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// APIVersion is the Content Safety REST version the client speaks (GA; it
// has both text:analyze and text:shieldPrompt).
const APIVersion = "2024-09-01"

// Scope is the token audience for a managed identity.
const Scope = "https://cognitiveservices.azure.com/.default"

// MaxText is the longest text (in characters) one text:analyze call takes;
// longer prompts are analysed in pieces.
const MaxText = 10000

// maxPieces bounds the text:analyze calls of one request (100,000
// characters); text past it is not analysed, and Check reports that.
const maxPieces = 10

// authorizer sets the credential on a request (backendauth.APIKeyHeader or
// backendauth.Token).
type authorizer interface {
	Authorize(ctx context.Context, h http.Header) error
}

// KeyAuth sends a resource key as Ocp-Apim-Subscription-Key.
type KeyAuth string

// Authorize implements [authorizer].
func (k KeyAuth) Authorize(_ context.Context, h http.Header) error {
	h.Set("Ocp-Apim-Subscription-Key", string(k))
	return nil
}

// Client calls the Content Safety text APIs. Safe for concurrent use.
type Client struct {
	endpoint string
	auth     authorizer
	http     *http.Client
}

// NewClient returns a client of the resource at endpoint
// (https://<name>.cognitiveservices.azure.com). hc carries no timeout of
// its own: callers bound each check with their context.
func NewClient(endpoint string, auth authorizer, hc *http.Client) *Client {
	return &Client{endpoint: strings.TrimRight(endpoint, "/"), auth: auth, http: hc}
}

// Analysis is a text:analyze answer: the severity per category.
type Analysis map[string]int

// Shield is a text:shieldPrompt answer.
type Shield struct {
	UserPromptAttack bool
	DocumentAttack   bool
}

// ServiceError is an answer other than 200 from the service.
type ServiceError struct {
	Status int
	Code   string
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("content safety: status %d %s", e.Status, e.Code)
}

// Analyze runs text:analyze on text (at most MaxText characters) for the
// categories.
func (c *Client) Analyze(ctx context.Context, text string, categories []string) (Analysis, error) {
	req := struct {
		Text       string   `json:"text"`
		Categories []string `json:"categories"`
		OutputType string   `json:"outputType"`
	}{text, categories, "FourSeverityLevels"}
	var resp struct {
		CategoriesAnalysis []struct {
			Category string `json:"category"`
			Severity int    `json:"severity"`
		} `json:"categoriesAnalysis"`
	}
	if err := c.call(ctx, "text:analyze", req, &resp); err != nil {
		return nil, err
	}
	a := Analysis{}
	for _, r := range resp.CategoriesAnalysis {
		a[r.Category] = r.Severity
	}
	return a, nil
}

// ShieldPrompt runs Prompt Shields on the user's prompt and the documents.
func (c *Client) ShieldPrompt(ctx context.Context, userPrompt string, documents []string) (Shield, error) {
	req := struct {
		UserPrompt string   `json:"userPrompt"`
		Documents  []string `json:"documents"`
	}{userPrompt, documents}
	if req.Documents == nil {
		req.Documents = []string{}
	}
	var resp struct {
		UserPromptAnalysis *struct {
			AttackDetected bool `json:"attackDetected"`
		} `json:"userPromptAnalysis"`
		DocumentsAnalysis []struct {
			AttackDetected bool `json:"attackDetected"`
		} `json:"documentsAnalysis"`
	}
	if err := c.call(ctx, "text:shieldPrompt", req, &resp); err != nil {
		return Shield{}, err
	}
	var s Shield
	if resp.UserPromptAnalysis != nil {
		s.UserPromptAttack = resp.UserPromptAnalysis.AttackDetected
	}
	for _, d := range resp.DocumentsAnalysis {
		s.DocumentAttack = s.DocumentAttack || d.AttackDetected
	}
	return s, nil
}

func (c *Client) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+"/contentsafety/"+op+"?api-version="+APIVersion, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.auth != nil {
		if err := c.auth.Authorize(ctx, req.Header); err != nil {
			return fmt.Errorf("content safety credential: %w", err)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("content safety %s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("content safety %s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &ServiceError{Status: resp.StatusCode, Code: e.Error.Code}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("content safety %s: %w", op, errors.Join(errUnexpected, err))
	}
	return nil
}

var errUnexpected = errors.New("unexpected answer")
