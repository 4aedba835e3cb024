package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// EmbeddingBody is the /embeddings request body for text (floats: the
// vectors are quantised here, not by the backend).
func EmbeddingBody(alias, text string) []byte {
	b, _ := json.Marshal(map[string]any{"model": alias, "input": text, "encoding_format": "float"})
	return b
}

// ParseEmbedding reads the first vector of an /embeddings answer.
func ParseEmbedding(body []byte) ([]float32, error) {
	var r struct {
		Data []struct {
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("cache: embeddings answer: %w", err)
	}
	if len(r.Data) == 0 || len(r.Data[0].Embedding) == 0 {
		return nil, errors.New("cache: embeddings answer has no vector")
	}
	return r.Data[0].Embedding, nil
}

// Buffer is an http.ResponseWriter that keeps the response in memory: what
// the gateway's own embedding call is written to.
type Buffer struct {
	Status int
	Body   bytes.Buffer
	h      http.Header
}

// Header implements http.ResponseWriter.
func (b *Buffer) Header() http.Header {
	if b.h == nil {
		b.h = http.Header{}
	}
	return b.h
}

// WriteHeader implements http.ResponseWriter.
func (b *Buffer) WriteHeader(code int) {
	if b.Status == 0 {
		b.Status = code
	}
}

// Write implements http.ResponseWriter.
func (b *Buffer) Write(p []byte) (int, error) {
	if b.Status == 0 {
		b.Status = http.StatusOK
	}
	return b.Body.Write(p)
}
