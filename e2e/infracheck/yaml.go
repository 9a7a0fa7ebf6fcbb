package infracheck

import (
	"fmt"
	"strings"
)

// Node is a YAML mapping entry: a scalar Value or nested Children (never both).
type Node struct {
	Value    string
	Children map[string]*Node
	Line     int
}

// Get follows a path of keys; it returns nil when a key is missing.
func (n *Node) Get(keys ...string) *Node {
	cur := n
	for _, k := range keys {
		if cur == nil || cur.Children == nil {
			return nil
		}
		cur = cur.Children[k]
	}
	return cur
}

// Str returns the scalar at keys, or "".
func (n *Node) Str(keys ...string) string {
	if c := n.Get(keys...); c != nil {
		return c.Value
	}
	return ""
}

// ParseYAMLMap parses the block-mapping subset of YAML that azure.yaml uses: `key: value` and
// `key:` followed by a more indented mapping, comments and blank lines. Sequences, flow
// collections, anchors and multi-line scalars are rejected with an error rather than
// misread: this is a scanner for one file, not a YAML parser.
func ParseYAMLMap(src string) (*Node, error) {
	root := &Node{Children: map[string]*Node{}}
	type frame struct {
		indent int
		node   *Node
	}
	stack := []frame{{indent: -1, node: root}}
	var pending *Node // a `key:` whose children are not seen yet
	pendingIndent := 0
	for i, raw := range strings.Split(src, "\n") {
		n := i + 1
		line := yamlStripComment(raw)
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if strings.Contains(line[:indent], "\t") || strings.HasPrefix(strings.TrimLeft(line, " \t"), "\t") {
			return nil, fmt.Errorf("line %d: tabs are not YAML indentation", n)
		}
		text := strings.TrimSpace(line)
		if strings.HasPrefix(text, "- ") || text == "-" || strings.HasPrefix(text, "[") || strings.HasPrefix(text, "{") {
			return nil, fmt.Errorf("line %d: sequences and flow collections are not supported by this scanner", n)
		}
		if pending != nil {
			if indent > pendingIndent {
				pending.Children = map[string]*Node{}
				stack = append(stack, frame{indent: indent, node: pending})
			}
			pending = nil
		}
		for len(stack) > 1 && indent < stack[len(stack)-1].indent {
			stack = stack[:len(stack)-1]
		}
		top := stack[len(stack)-1]
		if indent != top.indent && top.indent >= 0 {
			return nil, fmt.Errorf("line %d: inconsistent indentation", n)
		}
		if top.indent < 0 {
			if indent != 0 {
				return nil, fmt.Errorf("line %d: top-level keys must start in column 1", n)
			}
			stack[0].indent = 0
			top = stack[0]
		}
		key, val, ok := strings.Cut(text, ":")
		if !ok || (val != "" && !strings.HasPrefix(val, " ")) {
			return nil, fmt.Errorf("line %d: expected `key: value`", n)
		}
		key = strings.TrimSpace(key)
		if _, dup := top.node.Children[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", n, key)
		}
		val = strings.TrimSpace(val)
		if strings.HasPrefix(val, "|") || strings.HasPrefix(val, ">") || strings.HasPrefix(val, "&") || strings.HasPrefix(val, "*") {
			return nil, fmt.Errorf("line %d: block scalars and anchors are not supported by this scanner", n)
		}
		child := &Node{Value: unquote(val), Line: n}
		top.node.Children[key] = child
		if val == "" {
			pending, pendingIndent = child, indent
		}
	}
	return root, nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// yamlStripComment drops a # comment that starts a line or follows whitespace outside quotes.
func yamlStripComment(line string) string {
	var q byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimRight(line[:i], " \t")
		}
	}
	return strings.TrimRight(line, " \t\r")
}
