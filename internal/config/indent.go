package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// badIndent finds the first line of a YAML block document whose indentation
// cannot be right, for a clearer message than the YAML parser's, which
// names the line where the enclosing mapping started (go.yaml.in/yaml/v3
// reports "line 3: did not find expected key" for a bad line 4). It returns
// 0 when every line's indentation is plausible. It knows block mappings,
// block sequences and block scalars; flow collections spanning lines are
// left to the parser.
func badIndent(data []byte) (line int, why string) {
	stack := []int{0} // indents of the open block levels
	opens := false    // the previous line opened a nested block
	scalar := -1      // inside a block scalar (| or >) of lines indented more than this
	flow := 0         // depth of { and [ left open by earlier lines
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		text := strings.TrimRight(raw, " \r")
		body := strings.TrimLeft(text, " ")
		indent := len(text) - len(body)
		if scalar >= 0 {
			if body == "" || indent > scalar {
				continue
			}
			scalar = -1
		}
		if body == "" || strings.HasPrefix(body, "#") || body == "---" {
			continue
		}
		if flow > 0 { // a flow collection continued from the line before
			flow += flowDepth(body)
			continue
		}
		if strings.HasPrefix(body, "\t") {
			return n, "a tab in the indentation (use spaces)"
		}
		top := stack[len(stack)-1]
		switch {
		case indent > top && opens:
			stack = append(stack, indent)
		case indent > top:
			return n, fmt.Sprintf("indented %d spaces, more than the line before it allows", indent)
		default:
			for indent < stack[len(stack)-1] {
				stack = stack[:len(stack)-1]
			}
			if indent != stack[len(stack)-1] {
				return n, fmt.Sprintf("indented %d spaces, which matches no enclosing level", indent)
			}
		}
		// A sequence item "- key: v" opens a mapping at the item's content.
		item := body
		for strings.HasPrefix(item, "- ") {
			rest := strings.TrimLeft(item[2:], " ")
			indent += len(item) - len(rest)
			item = rest
			stack = append(stack, indent)
		}
		flow = max(flowDepth(item), 0)
		opens = item == "-" || strings.HasSuffix(stripComment(item), ":")
		if v := stripComment(item); strings.HasSuffix(v, "|") || strings.HasSuffix(v, ">") ||
			strings.HasSuffix(v, "|-") || strings.HasSuffix(v, ">-") || strings.HasSuffix(v, "|+") || strings.HasSuffix(v, ">+") {
			scalar = stack[len(stack)-1]
			opens = false
		}
	}
	return 0, ""
}

// flowDepth is how many { and [ a line opens (minus those it closes),
// outside quotes and comments.
func flowDepth(s string) int {
	d := 0
	inS, inD := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' && !inD:
			inS = !inS
		case c == '"' && !inS:
			inD = !inD
		case inS || inD:
		case c == '#' && i > 0 && s[i-1] == ' ':
			return d
		case c == '{' || c == '[':
			d++
		case c == '}' || c == ']':
			d--
		}
	}
	return d
}

// stripComment drops a trailing " # comment" outside quotes.
func stripComment(s string) string {
	inS, inD := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' && !inD:
			inS = !inS
		case c == '"' && !inS:
			inD = !inD
		case c == '#' && !inS && !inD && i > 0 && s[i-1] == ' ':
			return strings.TrimRight(s[:i], " ")
		}
	}
	return strings.TrimRight(s, " ")
}

// yamlLine reads the line number of a go.yaml.in/yaml/v3 syntax error
// ("yaml: line 3: did not find expected key").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxLine replaces the YAML parser's line number for an indentation
// error with the line that is actually wrong, when badIndent finds one at
// or after the parser's line (the parser names where the enclosing block
// began). Other errors are returned as they are.
func syntaxLine(data []byte, err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	parserLine, _ := strconv.Atoi(m[1])
	n, why := badIndent(data)
	if n == 0 || n < parserLine {
		return err
	}
	return fmt.Errorf("line %d: %s (the YAML parser says: %s at line %d)", n, why, m[2], parserLine)
}
