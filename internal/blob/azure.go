package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
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
