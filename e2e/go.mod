module github.com/mcpgate/mcpgate/e2e

go 1.26.8
