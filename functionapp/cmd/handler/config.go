package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/functionapp/storage"
)

// config is the handler's configuration: flags, each defaulting to its environment variable.
type config struct {
	port       string // FUNCTIONS_CUSTOMHANDLER_PORT: set by the Functions host (host mode)
	listen     string // standalone listen address
	secretsDir string // standalone key files
	function   string // function name whose own keys are accepted
	logLevel   string
	logFormat  string
	storage    storage.Config
}

// option describes one flag and the environment variable it mirrors.
type option struct {
	flag, env, def, usage string
	dst                   *string
}

func (c *config) options() []option {
	return []option{
		{"port", "FUNCTIONS_CUSTOMHANDLER_PORT", "", "host mode: listen on 127.0.0.1:PORT with no key check (set by the Functions host)", &c.port},
		{"listen", "FUNCTIONAPP_LISTEN", "127.0.0.1:7071", "standalone mode: listen address", &c.listen},
		{"secrets-dir", "FUNCTIONAPP_SECRETS_DIR", ".mcpgate/secrets", "standalone mode: directory of host.json and mcp.json key files (generated when missing)", &c.secretsDir},
		{"function-name", "FUNCTIONAPP_FUNCTION_NAME", "mcp", "standalone mode: function whose own keys (<name>.json) are accepted", &c.function},
		{"snippets-dir", "SNIPPETS_DIR", ".mcpgate/snippets", "snippet directory when no blob storage is configured", &c.storage.Dir},
		{"blob-service-uri", "AzureWebJobsStorage__blobServiceUri", "", "blob endpoint for identity-based storage access", &c.storage.BlobServiceURI},
		{"storage-account", "AzureWebJobsStorage__accountName", "", "storage account for identity-based access (https://NAME.blob.core.windows.net/)", &c.storage.AccountName},
		{"storage-client-id", "AzureWebJobsStorage__clientId", "", "client id of the user-assigned managed identity", &c.storage.ClientID},
		{"storage-credential", "AzureWebJobsStorage__credential", "", "\"managedidentity\", or empty for the default Azure credential chain", &c.storage.Credential},
		{"log-level", "FUNCTIONAPP_LOG_LEVEL", "info", "debug, info, warn or error", &c.logLevel},
		{"log-format", "FUNCTIONAPP_LOG_FORMAT", "auto", "json, text, or auto (text on a terminal in standalone mode, else JSON)", &c.logFormat},
	}
}

// parseConfig reads flags (args) over environment variables (getenv) over defaults. The
// storage connection string is read from AzureWebJobsStorage only: a flag would show its
// account key in process listings.
func parseConfig(args []string, getenv func(string) string, usageOut io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("handler", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	opts := c.options()
	for _, o := range opts {
		def := o.def
		if v := getenv(o.env); v != "" {
			def = v
		}
		fs.StringVar(o.dst, o.flag, def, o.usage+" [$"+o.env+"]")
	}
	fs.Usage = func() {
		fmt.Fprint(usageOut, `handler: the mcpgate function app (MCP snippet tools) as an Azure Functions custom handler.

With FUNCTIONS_CUSTOMHANDLER_PORT set (by the Functions host) it serves 127.0.0.1:$PORT and
leaves the function-key check to the host. Otherwise it runs standalone and checks
x-functions-key / ?code= itself against key files in the host's secrets format.

Storage: AzureWebJobsStorage__blobServiceUri or __accountName (identity-based), else the
AzureWebJobsStorage connection string (environment only), else the snippet directory.

Flags (each defaults to the environment variable in brackets):
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.storage.ConnectionString = getenv("AzureWebJobsStorage")
	if c.port != "" {
		if n, err := strconv.Atoi(c.port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("FUNCTIONS_CUSTOMHANDLER_PORT %q is not a TCP port", c.port)
		}
	}
	if _, err := parseLevel(c.logLevel); err != nil {
		return nil, err
	}
	switch c.logFormat {
	case "auto", "json", "text":
	default:
		return nil, fmt.Errorf("log format %q: want json, text or auto", c.logFormat)
	}
	return c, nil
}

// hostMode reports whether the Functions host runs us.
func (c *config) hostMode() bool { return c.port != "" }

func (c *config) addr() string {
	if c.hostMode() {
		return "127.0.0.1:" + c.port
	}
	return c.listen
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger logs JSON in host mode and when stderr is not a terminal, text otherwise.
func newLogger(c *config, w *os.File) *slog.Logger {
	level, _ := parseLevel(c.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	text := c.logFormat == "text"
	if c.logFormat == "auto" && !c.hostMode() {
		if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			text = true
		}
	}
	if text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
