package storage

import (
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// Config selects a backend the way Azure Functions resolves its AzureWebJobsStorage
// connection: an identity-based connection (BlobServiceURI or AccountName) first, then a
// connection string, then a local directory.
type Config struct {
	BlobServiceURI   string // AzureWebJobsStorage__blobServiceUri
	AccountName      string // AzureWebJobsStorage__accountName
	ClientID         string // AzureWebJobsStorage__clientId (user-assigned managed identity)
	Credential       string // AzureWebJobsStorage__credential ("managedidentity" or empty)
	ConnectionString string // AzureWebJobsStorage
	Dir              string // SNIPPETS_DIR, used when none of the above is set
	Container        string // blob container (DefaultContainer when empty)
}

// ConfigFromEnv reads Config from the Functions app-setting names through getenv.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		BlobServiceURI:   getenv("AzureWebJobsStorage__blobServiceUri"),
		AccountName:      getenv("AzureWebJobsStorage__accountName"),
		ClientID:         getenv("AzureWebJobsStorage__clientId"),
		Credential:       getenv("AzureWebJobsStorage__credential"),
		ConnectionString: getenv("AzureWebJobsStorage"),
		Dir:              getenv("SNIPPETS_DIR"),
	}
}

// Open returns the Store cfg selects and a short description of it that holds no secret
// (for logs). It does no network I/O: blob containers are created on first write.
func Open(cfg Config) (Store, string, error) {
	switch {
	case cfg.BlobServiceURI != "" || cfg.AccountName != "":
		uri := cfg.BlobServiceURI
		if uri == "" {
			uri = "https://" + cfg.AccountName + ".blob.core.windows.net/"
		}
		cred, kind, err := credential(cfg)
		if err != nil {
			return nil, "", err
		}
		c, err := azblob.NewClient(uri, cred, nil)
		if err != nil {
			return nil, "", fmt.Errorf("blob client for %s: %w", uri, err)
		}
		return NewBlob(c, cfg.Container), "blob " + uri + " (" + kind + ")", nil
	case cfg.ConnectionString != "":
		if strings.Contains(strings.ToLower(cfg.ConnectionString), "usedevelopmentstorage=true") {
			return nil, "", errDevStorage
		}
		c, err := azblob.NewClientFromConnectionString(cfg.ConnectionString, nil)
		if err != nil {
			// The SDK's message may quote the string; ours must not carry the account key.
			return nil, "", errors.New("AzureWebJobsStorage is not a valid storage connection string " +
				"(it needs AccountName and AccountKey, or BlobEndpoint and SharedAccessSignature)")
		}
		// The URL carries the SAS token when the string has one: log only its endpoint.
		endpoint, _, _ := strings.Cut(c.URL(), "?")
		return NewBlob(c, cfg.Container), "blob " + endpoint + " (connection string)", nil
	default:
		d, err := NewDir(cfg.Dir)
		if err != nil {
			return nil, "", err
		}
		return d, "directory " + d.Path(), nil
	}
}

func credential(cfg Config) (azcore.TokenCredential, string, error) {
	switch strings.ToLower(cfg.Credential) {
	case "managedidentity":
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		kind := "system-assigned managed identity"
		if cfg.ClientID != "" {
			opts.ID = azidentity.ClientID(cfg.ClientID)
			kind = "managed identity " + cfg.ClientID
		}
		c, err := azidentity.NewManagedIdentityCredential(opts)
		if err != nil {
			return nil, "", fmt.Errorf("managed identity credential: %w", err)
		}
		return c, kind, nil
	case "":
		c, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, "", fmt.Errorf("default Azure credential: %w", err)
		}
		return c, "default Azure credential", nil
	default:
		return nil, "", fmt.Errorf("AzureWebJobsStorage__credential=%q is not supported (use managedidentity or leave it empty)", cfg.Credential)
	}
}
