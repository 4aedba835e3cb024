package openai

import (
	"bytes"
	"errors"
	"mime/multipart"
	"testing"
)

func form(t *testing.T, fields map[string]string, file []byte) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, _ := w.CreateFormFile("file", "a.wav")
		fw.Write(file)
	}
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

func TestParseMultipartAndSetFormModel(t *testing.T) {
	file := bytes.Repeat([]byte{0, 1, 2, 'm', 'o', 'd', 'e', 'l'}, 100)
	ct, body := form(t, map[string]string{"model": "alias", "stream": "true"}, file)
	r, err := ParseMultipart(OpTranscriptions, StyleV1, "", "", ct, body)
	if err != nil || r.Model != "alias" || !r.Stream || r.ContentType != ct {
		t.Fatalf("ParseMultipart = %+v, %v", r, err)
	}
	if r, err := ParseMultipart(OpTranscriptions, StyleDeployment, "dep", "2025-03-01-preview", ct, body); err != nil || r.Model != "dep" {
		t.Errorf("deployment style: %+v, %v", r, err)
	}
	out, err := SetFormModel(ct, body, "deployment-1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ParseMultipart(OpTranscriptions, StyleV1, "", "", ct, out)
	if err != nil || r2.Model != "deployment-1" || !r2.Stream {
		t.Fatalf("after SetFormModel: %+v, %v", r2, err)
	}
	if !bytes.Contains(out, file) {
		t.Error("SetFormModel lost the file")
	}
	ct0, noModel := form(t, nil, file)
	if _, err := ParseMultipart(OpTranscriptions, StyleV1, "", "", ct0, noModel); !errors.Is(err, ErrMissing) {
		t.Errorf("no model: %v, want ErrMissing", err)
	}
	if _, err := ParseMultipart(OpTranscriptions, StyleV1, "", "", "application/json", []byte(`{}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("JSON body: %v, want ErrMalformed", err)
	}
}
