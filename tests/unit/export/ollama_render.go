// Renders an Ollama Modelfile TEMPLATE the way Ollama executes a messages template: Go's text/template with
// Ollama's "json" function and values shaped like Ollama's api types. Reads {"template", "messages", "tools"}
// as JSON on stdin, writes the rendered prompt to stdout. Used by test_ollama_tools.py when Go is installed.
package main

import (
	"encoding/json"
	"os"
	"text/template"
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
	if err := tmpl.Execute(os.Stdout, values); err != nil {
		panic(err)
	}
}
