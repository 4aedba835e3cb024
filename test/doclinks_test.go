package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestDocLinks checks that every relative link in README.md and docs/*.md
// resolves: the file (or directory) exists, and a #anchor names a heading of
// the target Markdown file (GitHub's anchor rules).
func TestDocLinks(t *testing.T) {
	root := repoRoot()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md"), filepath.Join(root, "infra", "README.md")}, files...)
	if len(files) < 5 {
		t.Fatalf("found only %d Markdown files", len(files))
	}
	links := 0
	for _, f := range files {
		n, problems := checkDocLinks(f)
		links += n
		for _, p := range problems {
			rel, _ := filepath.Rel(root, f)
			t.Errorf("%s: %s", rel, p)
		}
	}
	if links < 10 {
		t.Errorf("checked only %d relative links: is the link pattern broken?", links)
	}
}

// TestDocLinksCatchBreakage proves the checker fails on what it should.
func TestDocLinksCatchBreakage(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.md", "# Title\n\n## Key lifecycle and admin API\n\n## Quotas `limits:` (v2)\n\n## Dup\n\n## Dup\n")
	write("a.md", strings.Join([]string{
		"# A",
		"[ok](b.md) [ok](b.md#key-lifecycle-and-admin-api) [ok](b.md#quotas-limits-v2) [ok](b.md#dup-1)",
		"[ok](#a) [ok](https://example.com/x.md#nope) [ok](./)",
		"`[not a link](nowhere.md)`",
		"```",
		"[not a link](nowhere.md)",
		"```",
		"[bad file](missing.md) [bad anchor](b.md#nope) [bad self](#nope) [bad dup](b.md#dup-2)",
	}, "\n"))
	n, problems := checkDocLinks(filepath.Join(dir, "a.md"))
	if n != 10 {
		t.Errorf("checked %d links, want 10", n)
	}
	want := []string{"missing.md", "b.md#nope", "#nope", "b.md#dup-2"}
	if len(problems) != len(want) {
		t.Fatalf("problems = %q, want one per %q", problems, want)
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Errorf("problem %d = %q, want it to name %q", i, problems[i], w)
		}
	}
}

var (
	mdLink     = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	inlineCode = regexp.MustCompile("`[^`]*`")
)

// checkDocLinks returns how many relative links file has and what is wrong
// with them.
func checkDocLinks(file string) (int, []string) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, []string{err.Error()}
	}
	var problems []string
	n := 0
	for _, line := range proseLines(string(b)) {
		for _, m := range mdLink.FindAllStringSubmatch(inlineCode.ReplaceAllString(line, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			n++
			path, anchor, _ := strings.Cut(target, "#")
			resolved := file
			if path != "" {
				resolved = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
				if _, err := os.Stat(resolved); err != nil {
					problems = append(problems, fmt.Sprintf("link %s: no such file", target))
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(resolved, ".md") {
				problems = append(problems, fmt.Sprintf("link %s: anchor into a file that is not Markdown", target))
				continue
			}
			anchors, err := mdAnchors(resolved)
			if err != nil {
				problems = append(problems, fmt.Sprintf("link %s: %v", target, err))
				continue
			}
			if !anchors[anchor] {
				problems = append(problems, fmt.Sprintf("link %s: no heading with that anchor", target))
			}
		}
	}
	return n, problems
}

// proseLines returns the lines of a Markdown text outside fenced code blocks.
func proseLines(s string) []string {
	var out []string
	fenced := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, line)
		}
	}
	return out
}

// mdAnchors returns the anchors GitHub gives the headings of a Markdown file:
// lower case, punctuation other than '-' and '_' dropped, spaces as '-', and
// "-1", "-2", … after repeats.
func mdAnchors(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, line := range proseLines(string(b)) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimLeft(line, "#")
		if len(text) == len(line) || len(line)-len(text) > 6 || !strings.HasPrefix(text, " ") {
			continue
		}
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(text)) {
			switch {
			case r == ' ':
				slug.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		a := slug.String()
		if k := seen[a]; k > 0 {
			seen[a] = k + 1
			a = fmt.Sprintf("%s-%d", a, k)
		} else {
			seen[a] = 1
		}
		anchors[a] = true
	}
	return anchors, nil
}
