package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/appendblob"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

// AzureOptions connect an [Azure] container. Set ConnectionString, or
// ServiceURL and Credential.
type AzureOptions struct {
	// ConnectionString of the storage account (Azurite's explicit
	// development string works; UseDevelopmentStorage=true does not).
	ConnectionString string
	// ServiceURL is the blob endpoint, https://<account>.blob.core.windows.net/,
	// used with Credential (a managed identity, or DefaultAzureCredential).
	// The identity needs Storage Blob Data Contributor on the account or
	// the container.
	ServiceURL string
	Credential azcore.TokenCredential
	// Container holds the blobs. Required.
	Container string
}

// Azure keeps a container's blobs in Azure Blob Storage as block blobs.
// Safe for concurrent use.
type Azure struct {
	c         *azblob.Client
	container string
}

// NewAzure returns the container's client. It does no I/O; see
// EnsureContainer.
func NewAzure(o AzureOptions) (*Azure, error) {
	if err := checkContainer(o.Container); err != nil {
		return nil, err
	}
	// Retries are short: callers sit on a request path (job submission)
	// with their own deadline.
	opts := &azblob.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{
		MaxRetries: 3, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 2 * time.Second}}}
	var (
		c   *azblob.Client
		err error
	)
	switch {
	case o.ConnectionString != "":
		c, err = azblob.NewClientFromConnectionString(o.ConnectionString, opts)
	case o.ServiceURL != "" && o.Credential != nil:
		c, err = azblob.NewClient(o.ServiceURL, o.Credential, opts)
	default:
		return nil, errors.New("blob: set a connection string, or a service URL and a credential")
	}
	if err != nil {
		return nil, fmt.Errorf("blob: client: %w", err)
	}
	return &Azure{c: c, container: o.Container}, nil
}

// EnsureContainer creates the container when it does not exist (the Bicep
// creates it in Azure; Azurite starts empty). An existing container is fine.
func (a *Azure) EnsureContainer(ctx context.Context) error {
	_, err := a.c.CreateContainer(ctx, a.container, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("blob: create container %s: %w", a.container, err)
	}
	return nil
}

// Put stores data under name as a block blob, replacing any blob of that
// name. Blob Storage commits the whole upload at once, so a reader never
// sees part of it.
func (a *Azure) Put(ctx context.Context, name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := a.c.UploadBuffer(ctx, a.container, name, data, nil); err != nil {
		return fmt.Errorf("blob: put %s: %w", name, err)
	}
	return nil
}

// Get returns the blob's content, or ErrNotFound.
func (a *Azure) Get(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	resp, err := a.c.DownloadStream(ctx, a.container, name, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: get %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("blob: get %s: %w", name, err)
	}
	return b, nil
}

// Delete removes the blob. Deleting a missing blob is not an error, so a
// retried delete succeeds.
func (a *Azure) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := a.c.DeleteBlob(ctx, a.container, name, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
		return fmt.Errorf("blob: delete %s: %w", name, err)
	}
	return nil
}

// AppendAt appends data (at most MaxAppendBlock bytes) to the append blob
// name, on the condition that it is at bytes long (Azure's appendpos
// condition): a retried append that landed already fails with a
// *PositionError instead of writing twice. At 0 a missing blob is created.
// It returns the blob's committed block count.
func (a *Azure) AppendAt(ctx context.Context, name string, data []byte, at int64) (blocks int, err error) {
	if err := checkBlock(name, data, at); err != nil {
		return 0, err
	}
	ab := a.c.ServiceClient().NewContainerClient(a.container).NewAppendBlobClient(name)
	if at == 0 {
		// If-None-Match: * keeps an existing blob (a retry, another writer).
		_, err := ab.Create(ctx, &appendblob.CreateOptions{AccessConditions: &azblobblob.AccessConditions{
			ModifiedAccessConditions: &azblobblob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}}})
		if err != nil && !bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
			return 0, fmt.Errorf("blob: create append blob %s: %w", name, err)
		}
	}
	resp, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(data)), &appendblob.AppendBlockOptions{
		AppendPositionAccessConditions: &appendblob.AppendPositionAccessConditions{AppendPosition: &at}})
	switch {
	case bloberror.HasCode(err, bloberror.AppendPositionConditionNotMet):
		size, _, serr := a.AppendSize(ctx, name)
		if serr != nil {
			size = -1
		}
		return 0, &PositionError{Name: name, At: at, Size: size}
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		return 0, &PositionError{Name: name, At: at, Size: 0}
	case err != nil:
		return 0, fmt.Errorf("blob: append %s: %w", name, err)
	}
	if resp.BlobCommittedBlockCount != nil {
		blocks = int(*resp.BlobCommittedBlockCount)
	}
	return blocks, nil
}

// AppendSize returns an append blob's length and committed block count, or
// ErrNotFound.
func (a *Azure) AppendSize(ctx context.Context, name string) (size int64, blocks int, err error) {
	if err := checkName(name); err != nil {
		return 0, 0, err
	}
	p, err := a.c.ServiceClient().NewContainerClient(a.container).NewAppendBlobClient(name).GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return 0, 0, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("blob: properties %s: %w", name, err)
	}
	if p.ContentLength != nil {
		size = *p.ContentLength
	}
	if p.BlobCommittedBlockCount != nil {
		blocks = int(*p.BlobCommittedBlockCount)
	}
	return size, blocks, nil
}

// List returns the names of the blobs that start with prefix, in order.
func (a *Azure) List(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	pager := a.c.NewListBlobsFlatPager(a.container, &azblob.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("blob: list %s: %w", prefix, err)
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name != nil {
				names = append(names, *b.Name)
			}
		}
	}
	return names, nil
}
