package sim

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
)

// Image and audio operations. They answer in the shapes of the OpenAI and
// Azure OpenAI APIs with deterministic content: images/generations with a
// gpt-image-1 style usage (input_tokens / output_tokens), audio/speech with
// audio bytes and no usage, audio/transcriptions (multipart) with a
// gpt-4o-transcribe style usage. Any chat deployment serves them.

// generatedImageTokens is what one generated image costs in output tokens (the
// medium quality 1024x1024 figure of gpt-image-1).
const generatedImageTokens = 1056

// images serves POST images/generations.
func (c *call) images() error {
	var req struct {
		Prompt *string `json:"prompt"`
		N      *int64  `json:"n"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Prompt == nil || *req.Prompt == "" {
		return errMissing("prompt")
	}
	n := int64(1)
	if req.N != nil {
		if *req.N < 1 || *req.N > 10 {
			return errInvalid("n", "Invalid 'n': expected an integer between 1 and 10.")
		}
		n = *req.N
	}
	in, out := textTokens(len(*req.Prompt)), generatedImageTokens*n
	if err := c.admit(in + out); err != nil {
		return err
	}
	if err := sleep(c.ctx, c.pace.ttft); err != nil {
		return err
	}
	data := make([]map[string]string, n)
	for i := range data {
		// A deterministic stand-in for the PNG: the prompt and the index.
		data[i] = map[string]string{"b64_json": base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "image %d of %q", i, *req.Prompt))}
	}
	resp := map[string]any{
		"created": c.now.Unix(), "data": data,
		"usage": map[string]any{"input_tokens": in, "output_tokens": out, "total_tokens": in + out,
			"input_tokens_details": map[string]int64{"text_tokens": in, "image_tokens": 0}},
	}
	return c.writeBody(resp, Totals{Requests: 1, PromptTokens: in, CompletionTokens: out})
}

// speech serves POST audio/speech: audio bytes, no usage in the answer.
func (c *call) speech() error {
	var req struct {
		Input *string `json:"input"`
		Voice string  `json:"voice"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Input == nil || *req.Input == "" {
		return errMissing("input")
	}
	if err := c.admit(textTokens(len(*req.Input))); err != nil {
		return err
	}
	if err := sleep(c.ctx, c.pace.ttft); err != nil {
		return err
	}
	// A deterministic stand-in for MP3 frames: an ID3 header, then the text.
	audio := append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), bytes.Repeat([]byte(*req.Input), 4)...)
	h := c.w.Header()
	h.Set("Content-Type", "audio/mpeg")
	h.Set("Content-Length", strconv.Itoa(len(audio)))
	c.w.WriteHeader(http.StatusOK)
	c.record(Totals{Requests: 1})
	_, err := c.w.Write(audio)
	return err
}

// transcription serves POST audio/transcriptions (multipart/form-data
// with a file): text derived from the file, and token usage.
func (c *call) transcription() error {
	size, ok := c.form["file"]
	if !ok {
		return errMissing("file")
	}
	n, _ := strconv.Atoi(size)
	in := int64(n/64 + 1) // audio tokens grow with the recording
	text := fmt.Sprintf("A recording of %d bytes.", n)
	out := textTokens(len(text))
	if err := c.admit(in + out); err != nil {
		return err
	}
	if err := sleep(c.ctx, c.pace.ttft); err != nil {
		return err
	}
	resp := map[string]any{"text": text,
		"usage": map[string]any{"type": "tokens", "input_tokens": in, "output_tokens": out, "total_tokens": in + out,
			"input_token_details": map[string]int64{"audio_tokens": in, "text_tokens": 0}}}
	return c.writeBody(resp, Totals{Requests: 1, PromptTokens: in, CompletionTokens: out})
}

// parseForm reads a multipart/form-data body into c.form: each text
// field's value, and for the file field its size in bytes.
func (c *call) parseForm() error {
	mt, params, err := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return errInvalid("", "The request must be multipart/form-data with a file.")
	}
	c.form = map[string]string{}
	mr := multipart.NewReader(bytes.NewReader(c.body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errInvalid("", "The multipart body could not be read: "+err.Error())
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return errInvalid("", "The multipart body could not be read: "+err.Error())
		}
		if p.FileName() != "" {
			c.form[p.FormName()] = strconv.Itoa(len(b))
		} else {
			c.form[p.FormName()] = strings.TrimSpace(string(b))
		}
	}
}
