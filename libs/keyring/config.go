package keyring

import (
	"flag"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/conf"
)

// Environment variables of the master keys.
const (
	EnvMasterKeys    = "MASTER_KEYS"
	EnvMasterKeyFile = "MASTER_KEY_FILE"
)

// Config names where a process finds the local master keys: MASTER_KEYS ("id:base64key" entries, the
// current first) or a file of such lines.
type Config struct {
	MasterKeys    conf.Secret
	MasterKeyFile string
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.SecretVar(fs, &c.MasterKeys, "master-keys", EnvMasterKeys,
		"master keys that wrap the districts' keys, id:base64key entries separated by commas, the current first")
	conf.String(fs, &c.MasterKeyFile, "master-key-file", EnvMasterKeyFile, "",
		"file of master keys, one id:base64key line each, the current first (instead of the master keys)")
}

// Open returns the keyring of the control database pool with the configured master keys.
func (c Config) Open(pool *pgxpool.Pool, opt Options) (*Keyring, error) {
	master, err := LoadLocalKeys(c.MasterKeys.Reveal(), c.MasterKeyFile)
	if err != nil {
		return nil, err
	}
	return New(pool, master, opt), nil
}
