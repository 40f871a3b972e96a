"""The commands and categories an access string may name: every command of the engines this
service runs (redis 7.0 and valkey 8.1, from their own `COMMAND INFO` and `ACL CAT`), with the
subcommands of container commands. Data, not logic: regenerate it when a new engine version adds
commands."""

from __future__ import annotations

_CATEGORIES = (
    "admin bitmap blocking connection dangerous fast geo hash hyperloglog keyspace list "
    "pubsub read scripting set slow sortedset stream string transaction write"
)

# Commands without subcommands.
_PLAIN = """
append asking auth bgrewriteaof bgsave bitcount bitfield bitfield_ro bitop bitpos blmove blmpop blpop brpop
brpoplpush bzmpop bzpopmax bzpopmin copy dbsize debug decr decrby del discard dump echo eval eval_ro evalsha
evalsha_ro exec exists expire expireat expiretime failover fcall fcall_ro flushall flushdb geoadd geodist
geohash geopos georadius georadius_ro georadiusbymember georadiusbymember_ro geosearch geosearchstore get
getbit getdel getex getrange getset hdel hello hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget
hmset hrandfield hscan hset hsetnx hstrlen hvals incr incrby incrbyfloat info keys lastsave lcs lindex linsert
llen lmove lmpop lolwut lpop lpos lpush lpushx lrange lrem lset ltrim mget migrate monitor move mset msetnx
multi persist pexpire pexpireat pexpiretime pfadd pfcount pfdebug pfmerge pfselftest ping psetex psubscribe
psync pttl publish punsubscribe quit randomkey readonly readwrite rename renamenx replconf replicaof reset
restore restore-asking role rpop rpoplpush rpush rpushx sadd save scan scard sdiff sdiffstore select set
setbit setex setnx setrange shutdown sinter sintercard sinterstore sismember slaveof smembers smismember smove
sort sort_ro spop spublish srandmember srem sscan ssubscribe strlen subscribe substr sunion sunionstore
sunsubscribe swapdb sync time touch ttl type unlink unsubscribe unwatch wait waitaof watch xack xadd
xautoclaim xclaim xdel xlen xpending xrange xread xreadgroup xrevrange xsetid xtrim zadd zcard zcount zdiff
zdiffstore zincrby zinter zintercard zinterstore zlexcount zmpop zmscore zpopmax zpopmin zrandmember zrange
zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex zremrangebyrank zremrangebyscore zrevrange
zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion zunionstore
"""

# Container commands and their subcommands.
_CONTAINERS = {
    "acl": "cat deluser dryrun genpass getuser help list load log save setuser users whoami",
    "client": (
        "caching capa getname getredir help id import-source info kill list no-evict no-touch pause reply "
        "setinfo setname tracking trackinginfo unblock unpause "
    ),
    "cluster": (
        "addslots addslotsrange bumpepoch count-failure-reports countkeysinslot delslots delslotsrange "
        "failover flushslots forget getkeysinslot help info keyslot links meet myid myshardid nodes replicas "
        "replicate reset saveconfig set-config-epoch setslot shards slaves slot-stats slots "
    ),
    "command": "count docs getkeys getkeysandflags help info list",
    "commandlog": "get help len reset",
    "config": "get help resetstat rewrite set",
    "function": "delete dump flush help kill list load restore stats",
    "latency": "doctor graph help histogram history latest reset",
    "memory": "doctor help malloc-stats purge stats usage",
    "module": "help list load loadex unload",
    "object": "encoding freq help idletime refcount",
    "pubsub": "channels help numpat numsub shardchannels shardnumsub",
    "script": "debug exists flush help kill load show",
    "slowlog": "get help len reset",
    "xgroup": "create createconsumer delconsumer destroy help setid",
    "xinfo": "consumers groups help stream",
}
CATEGORIES = frozenset(_CATEGORIES.split())
CONTAINERS = {name: frozenset(subs.split()) for name, subs in _CONTAINERS.items()}
COMMANDS = frozenset(_PLAIN.split()) | frozenset(CONTAINERS)
