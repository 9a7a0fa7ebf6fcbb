package clients

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// maxStoredDoc bounds a stored registration read back from the backend.
const maxStoredDoc = 64 << 10

// BlobBackend stores one blob "{client_id}.json" per client in a blob container.
type BlobBackend struct {
	c *container.Client
}

// NewBlobBackend uses the container at containerURL (https://{account}.blob.core.windows.net/{container})
// with an Entra credential (managed identity in Azure). The container must exist.
func NewBlobBackend(containerURL string, cred azcore.TokenCredential) (*BlobBackend, error) {
	c, err := container.NewClient(containerURL, cred, nil)
	if err != nil {
		return nil, fmt.Errorf("clients: blob container %s: %w", containerURL, err)
	}
	return &BlobBackend{c: c}, nil
}

// NewBlobBackendFromConnectionString uses a storage connection string (Azurite) and creates
// the container when it does not exist yet.
func NewBlobBackendFromConnectionString(ctx context.Context, connectionString, containerName string) (*BlobBackend, error) {
	c, err := container.NewClientFromConnectionString(connectionString, containerName, nil)
	if err != nil {
		return nil, fmt.Errorf("clients: blob container %s: %w", containerName, err)
	}
	if _, err := c.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil, fmt.Errorf("clients: create blob container %s: %w", containerName, err)
	}
	return &BlobBackend{c: c}, nil
}

func blobName(id string) (string, error) {
	if !storeIDPattern.MatchString(id) {
		return "", fmt.Errorf("clients: invalid client id for storage: %w", ErrNotFound)
	}
	return id + ".json", nil
}

// Load downloads the client's document.
func (b *BlobBackend) Load(ctx context.Context, id string) ([]byte, error) {
	name, err := blobName(id)
	if err != nil {
		return nil, err
	}
	resp, err := b.c.NewBlobClient(name).DownloadStream(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return nil, fmt.Errorf("clients: load %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("clients: load %s: %w", id, err)
	}
	defer resp.Body.Close()
	doc, err := io.ReadAll(io.LimitReader(resp.Body, maxStoredDoc+1))
	if err != nil {
		return nil, fmt.Errorf("clients: load %s: %w", id, err)
	}
	if len(doc) > maxStoredDoc {
		return nil, fmt.Errorf("clients: load %s: stored document too large", id)
	}
	return doc, nil
}

// Save uploads the document (a single-shot block blob upload replaces it atomically).
func (b *BlobBackend) Save(ctx context.Context, id string, doc []byte) error {
	name, err := blobName(id)
	if err != nil {
		return err
	}
	ct := "application/json"
	_, err = b.c.NewBlockBlobClient(name).Upload(ctx, nopSeekCloser{bytes.NewReader(doc)}, &blockblob.UploadOptions{
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: &ct},
	})
	if err != nil {
		return fmt.Errorf("clients: save %s: %w", id, err)
	}
	return nil
}

// Delete removes the blob; deleting an unknown id is not an error.
func (b *BlobBackend) Delete(ctx context.Context, id string) error {
	name, err := blobName(id)
	if err != nil {
		return nil
	}
	_, err = b.c.NewBlobClient(name).Delete(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
		return fmt.Errorf("clients: delete %s: %w", id, err)
	}
	return nil
}

// List returns every stored client id.
func (b *BlobBackend) List(ctx context.Context) ([]string, error) {
	var ids []string
	pager := b.c.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("clients: list blobs: %w", err)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil {
				continue
			}
			id, ok := strings.CutSuffix(*item.Name, ".json")
			if ok && storeIDPattern.MatchString(id) {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }

// OpenBackend opens MCPGATE_CLIENTS_STORE: a blob container URL (http:// or https://, used
// with cred) or else a local directory (created if needed).
func OpenBackend(spec string, cred azcore.TokenCredential) (Backend, error) {
	if strings.HasPrefix(spec, "https://") || strings.HasPrefix(spec, "http://") {
		if cred == nil {
			return nil, fmt.Errorf("clients: blob container store %s needs an Azure credential", spec)
		}
		return NewBlobBackend(spec, cred)
	}
	if spec == "" {
		spec = DefaultDir
	}
	return NewDirBackend(spec)
}

// DefaultDir is the default local registrations directory, relative to the working directory.
const DefaultDir = ".mcpgate/clients"
