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

// KeyPartition is the partition, of a topic with partitions partitions, that the platform's partitioner
// gives a record keyed key: both hash keys with Kafka's murmur2 (the default hasher of kgo's partitioners).
func KeyPartition(key []byte, partitions int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: key}, partitions))
}
