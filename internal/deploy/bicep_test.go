package deploy

// A small static checker for the Bicep in infra/. The bicep CLI cannot be
// installed here (no npm or Debian package compiles Bicep offline), so this
// is no compiler: it lexes the files and checks what a typo most often
// breaks. TestBicepStatic runs it on infra/*.bicep and infra/modules/*.bicep;
// TestBicepLintCatches proves each rule on a broken snippet.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

type tokKind int

const (
	tokIdent tokKind = iota
	tokNumber
	tokPunct
	tokString
)

type bicepToken struct {
	kind        tokKind
	text        string
	line        int
	firstOnLine bool
}

// bicepFile is a lexed .bicep file.
type bicepFile struct {
	path   string
	src    string
	toks   []bicepToken
	errs   []error
	params map[string]bool // name -> has a default value
	outs   map[string]bool
	vars   map[string]bool
	syms   map[string]string // declared symbol -> "param", "var", "resource", "module", "loop"
	mods   map[string]string // module symbol -> path relative to the file
}

// lexBicep tokenizes src, checking that brackets, parentheses, braces,
// strings (with ${} interpolation) and block comments are balanced.
func lexBicep(path, src string) *bicepFile {
	f := &bicepFile{path: path, src: src}
	type frame struct {
		open byte // '{', '[', '(' or '$' for an interpolation inside a string
		line int
	}
	var stack []frame
	line := 1
	lineStart := true
	emit := func(k tokKind, text string) {
		f.toks = append(f.toks, bicepToken{kind: k, text: text, line: line, firstOnLine: lineStart})
		lineStart = false
	}
	bad := func(l int, format string, a ...any) {
		f.errs = append(f.errs, fmt.Errorf("%s:%d: "+format, append([]any{path, l}, a...)...))
	}
	i := 0
	// lexString reads a single-quoted string body from i (just after the
	// opening quote or a closing interpolation brace) to its end or to the
	// next ${, which it pushes.
	lexString := func(startLine int) {
		for i < len(src) {
			c := src[i]
			switch {
			case c == '\\':
				i += 2
				continue
			case c == '\n':
				bad(startLine, "unterminated string")
				return
			case c == '\'':
				i++
				return
			case c == '$' && i+1 < len(src) && src[i+1] == '{':
				stack = append(stack, frame{'$', line})
				i += 2
				return
			}
			i++
		}
		bad(startLine, "unterminated string at end of file")
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			lineStart = true
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				bad(line, "unterminated block comment")
				i = len(src)
				break
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 4
		case strings.HasPrefix(src[i:], "'''"):
			end := strings.Index(src[i+3:], "'''")
			if end < 0 {
				bad(line, "unterminated multi-line string")
				i = len(src)
				break
			}
			emit(tokString, src[i:i+6+end])
			line += strings.Count(src[i:i+3+end], "\n")
			i += end + 6
		case c == '\'':
			start, startLine := i, line
			i++
			emit(tokString, "")
			lexString(startLine)
			f.toks[len(f.toks)-1].text = src[start:i]
		case c == '{' || c == '[' || c == '(':
			stack = append(stack, frame{c, line})
			emit(tokPunct, string(c))
			i++
		case c == '}' || c == ']' || c == ')':
			want := map[byte]byte{'}': '{', ']': '[', ')': '('}[c]
			if len(stack) > 0 && stack[len(stack)-1].open == '$' && c == '}' {
				stack = stack[:len(stack)-1]
				i++
				lexString(line)
				continue
			}
			switch {
			case len(stack) == 0:
				bad(line, "unexpected %q", string(c))
			case stack[len(stack)-1].open != want:
				top := stack[len(stack)-1]
				open := string(top.open)
				if top.open == '$' {
					open = "${"
				}
				bad(line, "%q closes %q opened on line %d", string(c), open, top.line)
				stack = stack[:len(stack)-1]
			default:
				stack = stack[:len(stack)-1]
			}
			emit(tokPunct, string(c))
			i++
		case isIdentStart(c):
			j := i
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			emit(tokIdent, src[i:j])
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			emit(tokNumber, src[i:j])
			i = j
		default:
			emit(tokPunct, string(c))
			i++
		}
	}
	for _, fr := range stack {
		open := string(fr.open)
		if fr.open == '$' {
			open = "${"
		}
		bad(fr.line, "%q is never closed", open)
	}
	f.declare()
	return f
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func (f *bicepFile) tok(i int) bicepToken {
	if i < 0 || i >= len(f.toks) {
		return bicepToken{kind: tokPunct}
	}
	return f.toks[i]
}

// declare records params, vars, resources, modules, outputs and loop
// variables.
func (f *bicepFile) declare() {
	f.params, f.outs, f.vars = map[string]bool{}, map[string]bool{}, map[string]bool{}
	f.syms, f.mods = map[string]string{}, map[string]string{}
	for i, t := range f.toks {
		if t.kind != tokIdent {
			continue
		}
		next := f.tok(i + 1)
		switch {
		case t.firstOnLine && t.text == "param" && next.kind == tokIdent:
			// A default value is an '=' before the end of the declaration line.
			def := false
			for j := i + 2; j < len(f.toks) && f.toks[j].line == t.line; j++ {
				if f.toks[j].text == "=" {
					def = true
				}
			}
			f.params[next.text] = def
			f.syms[next.text] = "param"
		case t.firstOnLine && t.text == "var" && next.kind == tokIdent:
			f.vars[next.text] = true
			f.syms[next.text] = "var"
		case (t.firstOnLine || f.tok(i-1).text == "{") && t.text == "resource" && next.kind == tokIdent:
			f.syms[next.text] = "resource"
		case t.firstOnLine && t.text == "module" && next.kind == tokIdent:
			f.syms[next.text] = "module"
			if p := f.tok(i + 2); p.kind == tokString {
				f.mods[next.text] = strings.Trim(p.text, "'")
			}
		case t.firstOnLine && t.text == "output" && next.kind == tokIdent:
			f.outs[next.text] = true
		case t.text == "for":
			if next.kind == tokIdent {
				f.syms[next.text] = "loop"
			} else if next.text == "(" {
				for j := i + 2; j < len(f.toks) && f.toks[j].text != ")"; j++ {
					if f.toks[j].kind == tokIdent {
						f.syms[f.toks[j].text] = "loop"
					}
				}
			}
		}
	}
}

var bicepKeywords = map[string]bool{
	"param": true, "var": true, "resource": true, "module": true, "output": true, "targetScope": true,
	"existing": true, "for": true, "in": true, "if": true, "true": true, "false": true, "null": true,
	"import": true, "type": true, "metadata": true, "using": true, "func": true, "with": true, "as": true,
	"string": true, "int": true, "bool": true, "object": true, "array": true, "sys": true, "az": true,
}

// listFunction matches the ARM list* functions that return keys and
// connection strings (listKeys, listConnectionStrings, listSecrets, …).
var listFunction = regexp.MustCompile(`^list[A-Z]`)

// secretProperties read keys out of a resource.
var secretProperties = map[string]bool{
	"primarykey": true, "secondarykey": true, "primaryconnectionstring": true,
	"secondaryconnectionstring": true, "primarysharedkey": true, "secondarysharedkey": true,
	"primarymasterkey": true, "accountkey": true,
}

// lint checks one lexed file; modules maps a module path (as written in
// this file) to its lexed file, nil when the file does not exist.
func (f *bicepFile) lint(modules map[string]*bicepFile) []error {
	errs := append([]error{}, f.errs...)
	bad := func(line int, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: "+format, append([]any{f.path, line}, a...)...))
	}
	used := map[string]bool{}
	for i, t := range f.toks {
		if t.kind != tokIdent {
			continue
		}
		prev, prev2, next := f.tok(i-1), f.tok(i-2), f.tok(i+1)
		if listFunction.MatchString(t.text) && next.text == "(" {
			bad(t.line, "%s() returns secrets; use managed identity and role assignments instead", t.text)
		}
		if secretProperties[strings.ToLower(t.text)] && (prev.text == "." || prev.text == "?") {
			bad(t.line, "reads %s, a secret; use managed identity instead", t.text)
		}
		isKey := next.text == ":" && (t.firstOnLine || prev.text == "{" || prev.text == ",")
		if isKey && strings.EqualFold(t.text, "connectionString") {
			bad(t.line, "connectionString property: connections must be identity-based")
		}
		switch {
		case isKey, bicepKeywords[t.text], prev.text == "@", next.text == "(",
			prev.text == "." || (prev.text == "?" && prev2.text == "."):
			continue
		case prev.kind == tokIdent && (prev.text == "param" || prev.text == "var" || prev.text == "resource" ||
			prev.text == "module" || prev.text == "output" || prev.text == "for"):
			continue // a declaration
		case prev.kind == tokIdent && (prev2.text == "param" || prev2.text == "output"):
			continue // the type after a param or output name
		}
		if _, ok := f.syms[t.text]; !ok {
			bad(t.line, "%s is not declared", t.text)
			continue
		}
		used[t.text] = true
		// module.outputs.NAME must be an output of that module.
		if f.syms[t.text] == "module" && next.text == "." && f.tok(i+2).text == "outputs" && f.tok(i+3).text == "." {
			out := f.tok(i + 4).text
			if m := modules[f.mods[t.text]]; m != nil && !m.outs[out] {
				bad(t.line, "module %s (%s) has no output %s", t.text, f.mods[t.text], out)
			}
		}
	}
	for _, p := range sortedBoolKeys(f.params) {
		if !used[p] {
			bad(f.declLine("param", p), "param %s is declared but never used", p)
		}
	}
	for _, v := range sortedBoolKeys(f.vars) {
		if !used[v] {
			bad(f.declLine("var", v), "var %s is declared but never used", v)
		}
	}
	for _, p := range sortedBoolKeys(f.params) {
		if !f.hasDescription(f.declLine("param", p)) {
			bad(f.declLine("param", p), "param %s has no @description", p)
		}
	}
	errs = append(errs, f.lintModuleCalls(modules)...)
	errs = append(errs, scanSecrets(f.path, []byte(f.src))...)
	return errs
}

// lintModuleCalls checks that every module path exists, that each module
// call passes only params the module declares, and all it requires.
func (f *bicepFile) lintModuleCalls(modules map[string]*bicepFile) []error {
	var errs []error
	for i, t := range f.toks {
		if !(t.firstOnLine && t.text == "module") {
			continue
		}
		sym := f.tok(i + 1).text
		rel := f.mods[sym]
		m := modules[rel]
		if m == nil {
			errs = append(errs, fmt.Errorf("%s:%d: module %s: file %s does not exist", f.path, t.line, sym, rel))
			continue
		}
		passed := f.moduleParams(i)
		for _, p := range sortedBoolKeys(passed) {
			if _, ok := m.params[p]; !ok {
				errs = append(errs, fmt.Errorf("%s:%d: module %s passes %s, which %s does not declare", f.path, t.line, sym, p, rel))
			}
		}
		for _, p := range sortedBoolKeys(m.params) {
			if !m.params[p] && !passed[p] {
				errs = append(errs, fmt.Errorf("%s:%d: module %s does not pass %s, which %s requires", f.path, t.line, sym, p, rel))
			}
		}
	}
	return errs
}

// moduleParams returns the keys of the params object of the module
// declared at token i (in the first {…} body after the declaration).
func (f *bicepFile) moduleParams(i int) map[string]bool {
	keys := map[string]bool{}
	start := i
	for start < len(f.toks) && f.toks[start].text != "{" {
		start++
	}
	depth := 0
	for j := start; j < len(f.toks); j++ {
		switch f.toks[j].text {
		case "{", "[", "(":
			depth++
		case "}", "]", ")":
			depth--
		}
		if depth == 0 {
			return keys
		}
		if depth == 1 && f.toks[j].text == "params" && f.tok(j+1).text == ":" && f.tok(j+2).text == "{" {
			d := 1
			for k := j + 2; k < len(f.toks); k++ {
				switch f.toks[k].text {
				case "{", "[", "(":
					d++
				case "}", "]", ")":
					d--
				}
				if d == 1 {
					return keys
				}
				if d == 2 && f.toks[k].kind == tokIdent && f.toks[k].firstOnLine && f.tok(k+1).text == ":" {
					keys[f.toks[k].text] = true
				}
			}
		}
	}
	return keys
}

func (f *bicepFile) declLine(kw, name string) int {
	for i, t := range f.toks {
		if t.firstOnLine && t.text == kw && f.tok(i+1).text == name {
			return t.line
		}
	}
	return 0
}

// hasDescription reports whether the decorator block right above line (the
// non-blank lines before it) holds @description.
func (f *bicepFile) hasDescription(line int) bool {
	lines := strings.Split(f.src, "\n")
	for l := line - 2; l >= 0 && strings.TrimSpace(lines[l]) != ""; l-- {
		if strings.HasPrefix(strings.TrimSpace(lines[l]), "@description(") {
			return true
		}
	}
	return false
}

func sortedBoolKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lintBicepDir lexes every .bicep file under dir (one level of modules/
// included) and lints each against the modules it calls.
func lintBicepDir(t *testing.T, dir string) (map[string]*bicepFile, []error) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.bicep"))
	more, _ := filepath.Glob(filepath.Join(dir, "modules", "*.bicep"))
	paths = append(paths, more...)
	files := map[string]*bicepFile{}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = lexBicep(p, string(src))
	}
	var errs []error
	for _, p := range paths {
		f := files[p]
		mods := map[string]*bicepFile{}
		for _, rel := range f.mods {
			mods[rel] = files[filepath.Join(filepath.Dir(p), filepath.FromSlash(rel))]
		}
		errs = append(errs, f.lint(mods)...)
	}
	return files, errs
}

func TestBicepStatic(t *testing.T) {
	infra := filepath.Join(repoRoot(t), "infra")
	files, errs := lintBicepDir(t, infra)
	if len(files) < 2 {
		t.Fatalf("found %d .bicep files under %s", len(files), infra)
	}
	for _, err := range errs {
		t.Error(err)
	}
	main := files[filepath.Join(infra, "main.bicep")]
	if main == nil {
		t.Fatal("infra/main.bicep missing")
	}
	for _, out := range []string{"gatewayUrl", "functionAppName", "identityClientId", "storageTableEndpoint", "serviceBusNamespace"} {
		if !main.outs[out] {
			t.Errorf("main.bicep has no output %s", out)
		}
	}

	// The example parameters name only declared params and give every
	// required one.
	example := filepath.Join(infra, "main.parameters.example.json")
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var pf struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal(raw, &pf); err != nil {
		t.Fatalf("%s: %v", example, err)
	}
	for p := range pf.Parameters {
		if _, ok := main.params[p]; !ok {
			t.Errorf("%s sets %s, which main.bicep does not declare", example, p)
		}
	}
	for p, hasDefault := range main.params {
		if _, ok := pf.Parameters[p]; !ok && !hasDefault {
			t.Errorf("%s does not set %s, which main.bicep requires", example, p)
		}
	}
	// Nothing under infra/ (templates, configs, docs) looks like a secret.
	err = filepath.WalkDir(infra, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, e := range scanSecrets(p, data) {
			t.Error(e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBicepClaimCheckAndOperatorAccess checks the resources of issue 13: the
// job-bodies container with the gateway identity's Storage Blob Data
// Contributor role on it, and the deployer's Storage Table Data Contributor
// role on the account (on by default, opt-out by parameter) that lets an
// operator create the first admin key with az login.
func TestBicepClaimCheckAndOperatorAccess(t *testing.T) {
	infra := filepath.Join(repoRoot(t), "infra")
	files, _ := lintBicepDir(t, infra)
	main, storage := files[filepath.Join(infra, "main.bicep")], files[filepath.Join(infra, "modules", "storage.bicep")]
	if main == nil || storage == nil {
		t.Fatal("main.bicep or modules/storage.bicep missing")
	}
	const (
		blobContributor  = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
		tableContributor = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
	)
	// A resource block: its declaration up to the next top-level declaration.
	block := func(f *bicepFile, decl string) string {
		i := strings.Index(f.src, decl)
		if i < 0 {
			return ""
		}
		rest := f.src[i+len(decl):]
		if j := regexp.MustCompile(`(?m)^(resource|module|output|param|var) `).FindStringIndex(rest); j != nil {
			rest = rest[:j[0]]
		}
		return rest
	}
	tests := []struct {
		name string
		f    *bicepFile
		decl string
		want []string
	}{
		{"job bodies container", storage, "resource jobBodiesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@",
			[]string{"parent: blobService", "name: jobBodiesContainerName", "publicAccess: 'None'"}},
		{"gateway identity on the job bodies", storage, "resource jobBodiesContributor ",
			[]string{"scope: jobBodiesContainer", "storageBlobDataContributor", "principalId: principalId"}},
		{"deployer table access", storage, "resource tableAdmin ",
			[]string{"if (!empty(tableAdminPrincipalId))", "scope: account", "storageTableDataContributor", "principalId: tableAdminPrincipalId"}},
		{"leftover bodies expire", storage, "resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@",
			[]string{"'${jobBodiesContainerName}/'", "daysAfterModificationGreaterThan: jobBodiesRetentionDays"}},
		{"audit container", storage, "resource auditContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@",
			[]string{"parent: blobService", "name: auditContainerName", "publicAccess: 'None'"}},
		{"gateway identity on the audit container", storage, "resource auditContributor ",
			[]string{"scope: auditContainer", "storageBlobDataContributor", "principalId: principalId"}},
		{"audit blobs expire", storage, "resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@",
			[]string{"name: 'expire-audit'", "'appendBlob'", "'${auditContainerName}/'", "daysAfterModificationGreaterThan: auditRetentionDays"}},
		{"audit retention parameter", main, "param auditRetentionDays int = 365", nil},
		{"storage module gets the audit container", main, "module storage 'modules/storage.bicep'",
			[]string{"auditContainerName: auditContainerName", "auditRetentionDays: auditRetentionDays"}},
		{"opt-out parameter, default on", main, "param grantDeployerTableAccess bool = true", nil},
		{"deployer by default", main, "var tableAdminPrincipalId = ",
			[]string{"grantDeployerTableAccess ?", "deployer().objectId", "deployerPrincipalId"}},
		{"storage module gets them", main, "module storage 'modules/storage.bicep'",
			[]string{"jobBodiesContainerName: jobBodiesContainerName", "tableAdminPrincipalId: tableAdminPrincipalId"}},
		{"function app gets the blob endpoint", main, "module functionApp 'modules/functionapp.bicep'",
			[]string{"blobServiceUri: storage.outputs.blobEndpoint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := block(tt.f, tt.decl)
			if !strings.Contains(tt.f.src, tt.decl) {
				t.Fatalf("%s: no %q", tt.f.path, tt.decl)
			}
			for _, w := range tt.want {
				if !strings.Contains(b, w) {
					t.Errorf("%s %q: missing %q in\n%s", tt.f.path, tt.decl, w, b)
				}
			}
		})
	}
	for role, v := range map[string]string{blobContributor: "storageBlobDataContributor", tableContributor: "storageTableDataContributor"} {
		if !strings.Contains(storage.src, "var "+v+" = '"+role+"'") {
			t.Errorf("storage.bicep: %s is not the built-in role id %s", v, role)
		}
	}
	if !strings.Contains(main.src, "Premium") || !strings.Contains(main.src, "100 MB") || !strings.Contains(main.src, "256 KB") {
		t.Error("main.bicep should document the Service Bus message sizes (Standard 256 KB, Premium 100 MB)")
	}
}

// TestBicepLintCatches shows that each rule of the checker fires.
func TestBicepLintCatches(t *testing.T) {
	const module = `@description('A.')
param a string

@description('B.')
param b string = 'x'

output o string = '${a}${b}'
`
	tests := []struct {
		name, main, want string
	}{
		{"clean", `@description('P.')
param p string

module m 'modules/m.bicep' = {
  name: 'm'
  params: {
    a: p
  }
}

output x string = m.outputs.o
`, ""},
		{"unbalanced brace", "var x = {\n  a: 'b'\n", `"{" is never closed`},
		{"wrong closer", "var x = [\n  'a'\n}\n", `"}" closes "["`},
		{"unterminated string", "var x = 'abc\n", "unterminated string"},
		{"quote inside interpolation", "var y = 'a'\nvar x = '${y}'\nvar z = '${take('abc', 2)}-${x}'\noutput o string = z\n", ""},
		{"unclosed interpolation", "var y = 'a'\nvar x = '${y'\n", "unterminated string"},
		{"undeclared param", "var x = nope\n", "nope is not declared"},
		{"unused param", "@description('P.')\nparam p string\n", "param p is declared but never used"},
		{"unused var", "var v = 'x'\n", "var v is declared but never used"},
		{"param without description", "param p string\noutput o string = p\n", "param p has no @description"},
		{"missing module file", "module m 'modules/nope.bicep' = {\n  name: 'm'\n}\n", "does not exist"},
		{"unknown module param", "module m 'modules/m.bicep' = {\n  name: 'm'\n  params: {\n    a: 'x'\n    c: 'y'\n  }\n}\n", "passes c, which modules/m.bicep does not declare"},
		{"missing module param", "module m 'modules/m.bicep' = {\n  name: 'm'\n  params: {\n    b: 'y'\n  }\n}\n", "does not pass a, which modules/m.bicep requires"},
		{"unknown module output", "module m 'modules/m.bicep' = {\n  name: 'm'\n  params: {\n    a: 'x'\n  }\n}\noutput x string = m.outputs.nope\n", "has no output nope"},
		{"listKeys", "resource s 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  name: 'x'\n}\noutput k string = s.listKeys().keys[0].value\n", "listKeys() returns secrets"},
		{"list connection strings", "var c = listConnectionStrings('id', '2020-01-01')\noutput o object = c\n", "listConnectionStrings() returns secrets"},
		{"primary key", "resource s 'Microsoft.Insights/components@2020-02-02' existing = {\n  name: 'x'\n}\noutput k string = s.properties.primaryKey\n", "reads primaryKey"},
		{"connection string property", "var x = {\n  connectionString: 'abc'\n}\noutput o object = x\n", "connectionString property"},
		{"secret in a string", "var x = 'AccountKey=abcdefghijklmnopqrstuvwxyz0123456789=='\noutput o string = x\n", "storage account key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "modules", "m.bicep"), []byte(module), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "main.bicep"), []byte(tt.main), 0o644); err != nil {
				t.Fatal(err)
			}
			_, errs := lintBicepDir(t, dir)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			all := strings.Join(msgs, "\n")
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Fatalf("unexpected findings:\n%s", all)
			case tt.want != "" && !strings.Contains(all, tt.want):
				t.Fatalf("want a finding containing %q, got:\n%s", tt.want, all)
			}
		})
	}
}
