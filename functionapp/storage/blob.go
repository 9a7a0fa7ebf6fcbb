package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

// DefaultContainer is the blob container snippets live in (the sample's name).
const DefaultContainer = "snippets"

// Blob stores snippets as blobs "{name}.json" (raw text) in one container of an Azure Blob
// Storage account. The container is created on the first write when it does not exist;
// reads and lists of a missing container behave like an empty store. A single Put Blob
// replaces a blob atomically, so readers never see a torn snippet.
type Blob struct {
	client    *azblob.Client
	container string

	mu      sync.Mutex
	created bool // the container is known to exist
}

// NewBlob returns a Blob store over client and container (DefaultContainer when empty).
func NewBlob(client *azblob.Client, container string) *Blob {
	if container == "" {
		container = DefaultContainer
	}
	return &Blob{client: client, container: container}
}

// Get implements Store.
func (b *Blob) Get(ctx context.Context, name string) ([]byte, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	resp, err := b.client.DownloadStream(ctx, b.container, name+suffix, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("download snippet blob: %w", err)
	}
	defer resp.Body.Close()
	return readSnippet(resp.Body)
}

// Put implements Store.
func (b *Blob) Put(ctx context.Context, name string, content []byte) error {
	if err := checkPut(name, content); err != nil {
		return err
	}
	if err := b.ensureContainer(ctx); err != nil {
		return err
	}
	opts := &azblob.UploadBufferOptions{HTTPHeaders: &blob.HTTPHeaders{BlobContentType: to.Ptr("text/plain; charset=utf-8")}}
	_, err := b.client.UploadBuffer(ctx, b.container, name+suffix, content, opts)
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		// Deleted behind our back: create it again once.
		b.forget()
		if err = b.ensureContainer(ctx); err == nil {
			_, err = b.client.UploadBuffer(ctx, b.container, name+suffix, content, opts)
		}
	}
	if err != nil {
		return fmt.Errorf("upload snippet blob: %w", err)
	}
	return nil
}

// Delete implements Store.
func (b *Blob) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	_, err := b.client.DeleteBlob(ctx, b.container, name+suffix, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("delete snippet blob: %w", err)
	}
	return nil
}

// List implements Store.
func (b *Blob) List(ctx context.Context) ([]string, error) {
	names := []string{}
	pager := b.client.NewListBlobsFlatPager(b.container, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if bloberror.HasCode(err, bloberror.ContainerNotFound) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list snippet blobs: %w", err)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil {
				continue
			}
			n, ok := strings.CutSuffix(*item.Name, suffix)
			if ok && ValidateName(n) == nil {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

func (b *Blob) ensureContainer(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.created {
		return nil
	}
	_, err := b.client.CreateContainer(ctx, b.container, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("create container %q: %w", b.container, err)
	}
	b.created = true
	return nil
}

func (b *Blob) forget() {
	b.mu.Lock()
	b.created = false
	b.mu.Unlock()
}

// errDevStorage explains why the Functions shorthand cannot be used with azblob.
var errDevStorage = errors.New("AzureWebJobsStorage=UseDevelopmentStorage=true is not understood by the Go Azure SDK: " +
	"spell the Azurite connection string out, e.g. DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
	"AccountKey=<Azurite's well-known key>;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
