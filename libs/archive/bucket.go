package archive

import (
	"context"
	"errors"
	"fmt"
	"io"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Bucket is what the archive needs of object storage. Blob wraps the bucket Open returns in it; a test
// can wrap it again to fail at a chosen operation.
type Bucket interface {
	WriteAll(ctx context.Context, key string, p []byte) error
	// ReadAll returns ErrNotFound when key does not exist.
	ReadAll(ctx context.Context, key string) ([]byte, error)
	Copy(ctx context.Context, dst, src string) error
	Delete(ctx context.Context, key string) error
	// List returns the keys that begin with prefix.
	List(ctx context.Context, prefix string) ([]string, error)
	// ListObjects returns the keys that begin with prefix, with their sizes.
	ListObjects(ctx context.Context, prefix string) ([]Object, error)
}

// Object is a key and the size of what it holds.
type Object struct {
	Key  string
	Size int64
}

// ErrNotFound is a key that does not exist.
var ErrNotFound = errors.New("not found")

// Blob is a Bucket over a gocloud.dev/blob bucket.
type Blob struct{ B *blob.Bucket }

// WriteAll writes p to key.
func (b Blob) WriteAll(ctx context.Context, key string, p []byte) error {
	return b.B.WriteAll(ctx, key, p, nil)
}

// ReadAll reads key.
func (b Blob) ReadAll(ctx context.Context, key string) ([]byte, error) {
	p, err := b.B.ReadAll(ctx, key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, fmt.Errorf("reading %s: %w", key, ErrNotFound)
	}
	return p, err
}

// Copy copies src to dst.
func (b Blob) Copy(ctx context.Context, dst, src string) error { return b.B.Copy(ctx, dst, src, nil) }

// Delete deletes key; a key already gone is not an error.
func (b Blob) Delete(ctx context.Context, key string) error {
	if err := b.B.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return err
	}
	return nil
}

// List returns the keys under prefix.
func (b Blob) List(ctx context.Context, prefix string) ([]string, error) {
	objs, err := b.ListObjects(ctx, prefix)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	return keys, nil
}

// ListObjects returns the keys under prefix with their sizes.
func (b Blob) ListObjects(ctx context.Context, prefix string) ([]Object, error) {
	it := b.B.List(&blob.ListOptions{Prefix: prefix})
	var objs []Object
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", prefix, err)
		}
		objs = append(objs, Object{Key: obj.Key, Size: obj.Size})
	}
}
