package chutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Cluster reaches every node of a ClickHouse cluster (as the servers' remote_servers name them) through
// connections of its own, for what a Distributed table cannot do: ALTER the replicated tables under it,
// wait for their mutations on every replica, make every replica fetch what its shard holds, or read what
// one replica holds.
//
// ALTERs go to one replica of each shard, which hands them to the others through the shard's replication
// log. (ALTER ... ON CLUSTER has every replica race for its shard, a race ClickHouse 18.16's DDL worker
// can lose for good.)
type Cluster struct {
	// Name is the cluster's name in remote_servers.
	Name string
	// Database is where the tables are, on every node.
	Database string

	conn driver.Conn // any node: lists the cluster's nodes
	dial func(ctx context.Context, addr string) (driver.Conn, error)

	mu    sync.Mutex
	nodes map[string]driver.Conn
}

// NewCluster returns the cluster name of which conn (a connection to any of its nodes) belongs to. dial
// connects to one node, host:port as system.clusters names it, with database as its default database.
func NewCluster(conn driver.Conn, name, database string, dial func(ctx context.Context, addr string) (driver.Conn, error)) *Cluster {
	return &Cluster{Name: name, Database: database, conn: conn, dial: dial, nodes: map[string]driver.Conn{}}
}

// distributedEngine matches the engine clause of a Distributed table's CREATE statement: its cluster.
var distributedEngine = regexp.MustCompile("ENGINE = Distributed\\((`(?:[^`\\\\]|\\\\.)*`|'(?:[^'\\\\]|\\\\.)*'|[A-Za-z0-9_]+)")

// DistributedCluster reports the cluster database.table is a Distributed table over; ok is false when it
// is a table of another engine (the single-server layout) or does not exist.
func DistributedCluster(ctx context.Context, conn driver.Conn, database, table string) (cluster string, ok bool, err error) {
	var engines []struct {
		Engine string `ch:"engine"`
	}
	if err := conn.Select(ctx, &engines, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", database, table); err != nil {
		return "", false, fmt.Errorf("reading the engine of %s.%s: %w", database, table, err)
	}
	if len(engines) == 0 || engines[0].Engine != "Distributed" {
		return "", false, nil
	}
	var create string
	if err := conn.QueryRow(ctx, "SHOW CREATE TABLE "+QuoteIdent(database)+"."+QuoteIdent(table)).Scan(&create); err != nil {
		return "", false, fmt.Errorf("reading the definition of %s.%s: %w", database, table, err)
	}
	m := distributedEngine.FindStringSubmatch(create)
	if m == nil {
		return "", false, nil
	}
	name := m[1]
	if len(name) >= 2 && (name[0] == '`' || name[0] == '\'') {
		name = strings.ReplaceAll(name[1:len(name)-1], `\`+name[:1], name[:1])
	}
	return name, true, nil
}

// ClusterOf returns the cluster database.table is a Distributed table over, its nodes reached through
// dial as NewCluster does, or nil when the table is not Distributed (one server) or does not exist.
func ClusterOf(ctx context.Context, conn driver.Conn, database, table string, dial func(ctx context.Context, addr string) (driver.Conn, error)) (*Cluster, error) {
	name, ok, err := DistributedCluster(ctx, conn, database, table)
	if err != nil || !ok {
		return nil, err
	}
	if dial == nil {
		return nil, fmt.Errorf("%s.%s is Distributed over cluster %s, whose nodes are reached through a dial function, and none was given", database, table, name)
	}
	return NewCluster(conn, name, database, dial), nil
}

// Node is a node of the cluster, as system.clusters lists it.
type Node struct {
	Shard   uint32 `ch:"shard_num"`
	Replica uint32 `ch:"replica_num"`
	Host    string `ch:"host_address"`
	Port    uint16 `ch:"port"`
}

// Addr is the node's host:port.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(int(n.Port))) }

// Nodes lists the cluster's nodes, shard by shard.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, error) {
	var nodes []Node
	if err := c.conn.Select(ctx, &nodes, "SELECT shard_num, replica_num, host_address, port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num",
		c.Name); err != nil {
		return nil, fmt.Errorf("listing the nodes of cluster %s: %w", c.Name, err)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("cluster %s is not among the server's remote_servers", c.Name)
	}
	return nodes, nil
}

// Node returns a connection to one node, made once.
func (c *Cluster) Node(ctx context.Context, addr string) (driver.Conn, error) {
	c.mu.Lock()
	conn, ok := c.nodes[addr]
	c.mu.Unlock()
	if ok {
		return conn, nil
	}
	if c.dial == nil {
		return nil, errors.New("chutil: reaching the nodes of a cluster needs a dial function")
	}
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to node %s: %w", addr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.nodes[addr]; ok {
		_ = conn.Close() // another caller connected first
		return prev, nil
	}
	c.nodes[addr] = conn
	return conn, nil
}

// EachShard runs fn on one replica of each shard, the first on which it succeeds, and fails if it
// succeeds on no replica of a shard.
func (c *Cluster) EachShard(ctx context.Context, fn func(ctx context.Context, n Node, conn driver.Conn) error) error {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < len(nodes); {
		shard := nodes[i].Shard
		done := false
		var errs []error
		for ; i < len(nodes) && nodes[i].Shard == shard; i++ {
			if done {
				continue
			}
			conn, err := c.Node(ctx, nodes[i].Addr())
			if err == nil {
				err = fn(ctx, nodes[i], conn)
			}
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				errs = append(errs, fmt.Errorf("%s: %w", nodes[i].Addr(), err))
				continue
			}
			done = true
		}
		if !done {
			return fmt.Errorf("no replica of shard %d of cluster %s answered: %w", shard, c.Name, errors.Join(errs...))
		}
	}
	return nil
}

// EachNode runs fn on every node of the cluster, and fails on the first node where it fails.
func (c *Cluster) EachNode(ctx context.Context, fn func(ctx context.Context, n Node, conn driver.Conn) error) error {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		conn, err := c.Node(ctx, n.Addr())
		if err == nil {
			err = fn(ctx, n, conn)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
	}
	return nil
}

// OnEachShard runs a statement (an ALTER of a replicated table) on one replica of each shard.
func (c *Cluster) OnEachShard(ctx context.Context, query string, args ...any) error {
	return c.EachShard(ctx, func(ctx context.Context, _ Node, conn driver.Conn) error { return conn.Exec(ctx, query, args...) })
}

// WaitMutations waits until every replica has applied the mutations of a table of the database. A
// replica that does not answer makes it fail.
func (c *Cluster) WaitMutations(ctx context.Context, table string) error {
	return c.EachNode(ctx, func(ctx context.Context, _ Node, conn driver.Conn) error {
		return WaitMutations(ctx, conn, c.Database, table)
	})
}

// SyncReplicas waits until every replica of a replicated table of the database has fetched the parts its
// shard had when asked (SYSTEM SYNC REPLICA). A replica that does not answer makes it fail.
func (c *Cluster) SyncReplicas(ctx context.Context, table string) error {
	return c.EachNode(ctx, func(ctx context.Context, _ Node, conn driver.Conn) error {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+QuoteIdent(c.Database)+"."+QuoteIdent(table)); err != nil {
			return fmt.Errorf("syncing %s: %w", table, err)
		}
		return nil
	})
}

// Close closes the connections to the nodes.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, conn := range c.nodes {
		_ = conn.Close() // reads and ALTERs only: nothing is lost on close
		delete(c.nodes, addr)
	}
}
