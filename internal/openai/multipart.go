package openai

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
)

// maxFormField bounds a non-file form field read into memory.
const maxFormField = 64 << 10

// ParseMultipart reads the fields the gateway needs from a
// multipart/form-data body (audio transcriptions): the model (v1 style; the
// path names it in the deployment style) and stream.
func ParseMultipart(op Op, style Style, pathModel, apiVersion, contentType string, body []byte) (Request, error) {
	r := Request{Op: op, Style: style, APIVersion: apiVersion, N: 1, ContentType: contentType}
	fields, err := formFields(contentType, body, "model", "stream")
	if err != nil {
		return Request{}, err
	}
	if style == StyleDeployment {
		r.Model = pathModel
	} else if r.Model = fields["model"]; r.Model == "" {
		return Request{}, fmt.Errorf("%w: model", ErrMissing)
	}
	r.Stream = fields["stream"] == "true"
	return r, nil
}

// formFields returns the named non-file fields of a multipart body.
func formFields(contentType string, body []byte, names ...string) (map[string]string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, fmt.Errorf("%w: want a multipart/form-data body", ErrMalformed)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]string{}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if name := p.FormName(); want[name] && p.FileName() == "" {
			b, err := io.ReadAll(io.LimitReader(p, maxFormField))
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			out[name] = string(b)
		}
	}
}

// SetFormModel returns a multipart body with its "model" field replaced
// (added when absent), keeping every other part and the boundary.
func SetFormModel(contentType string, body []byte, model string) ([]byte, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return nil, fmt.Errorf("%w: want a multipart/form-data body", ErrMalformed)
	}
	var out bytes.Buffer
	w := multipart.NewWriter(&out)
	if err := w.SetBoundary(params["boundary"]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	wrote := false
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		h := textproto.MIMEHeader{}
		for k, v := range p.Header {
			h[k] = v
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			return nil, err
		}
		if p.FormName() == "model" && p.FileName() == "" {
			_, err = io.WriteString(pw, model)
			wrote = true
		} else {
			_, err = io.Copy(pw, p)
		}
		if err != nil {
			return nil, err
		}
	}
	if !wrote {
		if err := w.WriteField("model", model); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
