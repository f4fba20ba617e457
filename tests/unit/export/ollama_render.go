// Renders an Ollama Modelfile TEMPLATE the way Ollama executes a messages template: Go's text/template with
// Ollama's "json" function and values shaped like Ollama's api types. Reads {"template", "messages", "tools"}
// as JSON on stdin, writes {"prompt", "tag"} to stdout: the rendered prompt, and the call marker Ollama reads
// answers for (the first text inside the first {{ if }} that tests a .ToolCalls field, before any "{").
// Used by test_ollama_tools.py when Go is installed.
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"text/template"
	"text/template/parse"
)

type ToolCallFunction struct {
	Index     int            `json:"index,omitempty"`
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

type ToolCall struct {
	Function ToolCallFunction `json:"function"`
}

type Message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

type ToolFunction struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Parameters  map[string]any `json:"parameters"`
}

type Tool struct {
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

type Input struct {
	Template string    `json:"template"`
	Messages []Message `json:"messages"`
	Tools    []Tool    `json:"tools"`
}

func main() {
	var in Input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl := template.Must(template.New("").Option("missingkey=zero").Funcs(funcs).Parse(in.Template))
	values := map[string]any{"System": "", "Messages": in.Messages, "Tools": in.Tools, "Response": ""}
	if len(in.Tools) == 0 {
		values["Tools"] = nil
	}
	var prompt bytes.Buffer
	if err := tmpl.Execute(&prompt, values); err != nil {
		panic(err)
	}
	tag := ""
	if node := callsIf(tmpl.Tree.Root); node != nil {
		tag = strings.Split(strings.TrimSpace(firstText(node.List)), "{")[0]
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"prompt": prompt.String(), "tag": tag}); err != nil {
		panic(err)
	}
}

// callsIf: the first if-node (depth first) whose condition names the field ToolCalls.
func callsIf(node parse.Node) *parse.IfNode {
	switch n := node.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, child := range n.Nodes {
			if found := callsIf(child); found != nil {
				return found
			}
		}
	case *parse.IfNode:
		for _, command := range n.Pipe.Cmds {
			for _, arg := range command.Args {
				if field, ok := arg.(*parse.FieldNode); ok && len(field.Ident) > 0 && field.Ident[len(field.Ident)-1] == "ToolCalls" {
					return n
				}
			}
		}
		if found := callsIf(n.List); found != nil {
			return found
		}
		return callsIf(n.ElseList)
	case *parse.RangeNode:
		if found := callsIf(n.List); found != nil {
			return found
		}
		return callsIf(n.ElseList)
	}
	return nil
}

// firstText: the first text before any action, looking into nested blocks.
func firstText(list *parse.ListNode) string {
	if list == nil {
		return ""
	}
	for _, child := range list.Nodes {
		switch n := child.(type) {
		case *parse.TextNode:
			return string(n.Text)
		case *parse.IfNode:
			return firstText(n.List)
		case *parse.RangeNode:
			return firstText(n.List)
		default:
			return ""
		}
	}
	return ""
}
