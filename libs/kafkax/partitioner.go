package kafkax

import "github.com/twmb/franz-go/pkg/kgo"

// NewPartitioner returns the platform's partitioner. Keyed records go where Kafka's default murmur2 key
// hashing puts them, so every client (Java, Connect, kcat) agrees on a tenant's partition. Records for the
// manual topics keep the Partition set on them: the enricher writes its dedup changelog to the same
// partition number as the raw records it remembers.
func NewPartitioner(manualTopics ...string) kgo.Partitioner {
	m := make(map[string]bool, len(manualTopics))
	for _, t := range manualTopics {
		m[t] = true
	}
	return partitioner{def: kgo.UniformBytesPartitioner(64<<10, true, true, nil), manual: m}
}

type partitioner struct {
	def    kgo.Partitioner
	manual map[string]bool
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if p.manual[t] {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return p.def.ForTopic(t)
}

// keyed is franz-go's partitioner for keyed records with Kafka's own hash (murmur2), as the default
// partitioner above uses it.
var keyed = kgo.StickyKeyPartitioner(nil).ForTopic("")

// KeyPartition is the partition the platform's producers (and Kafka's Java clients) send a record keyed
// key to among n partitions.
func KeyPartition(key []byte, n int) int32 {
	return int32(keyed.Partition(&kgo.Record{Key: key}, n))
}
