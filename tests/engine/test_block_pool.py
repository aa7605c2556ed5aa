from engine.block_pool import BlockPool, hash_block
from engine.kv_manager import KVManager


def test_allocate_free_and_ref_counts():
    pool = BlockPool(4)
    a = pool.allocate(3)
    assert a == [0, 1, 2] and pool.num_free == 1
    assert pool.allocate(2) is None and pool.num_free == 1  # all or nothing
    pool.share(a[0])
    assert pool.ref_counts[a[0]] == 2
    pool.free(a)
    assert pool.ref_counts == [1, 0, 0, 0] and pool.num_free == 3
    pool.free([a[0]])
    assert pool.num_free == 4


def test_cached_blocks_survive_free_until_evicted_in_lru_order():
    pool = BlockPool(3)
    blocks = pool.allocate(3)
    hashes = [hash_block(None, [i]) for i in range(3)]
    for b, h in zip(blocks, hashes):
        pool.register(b, h)
    pool.free([blocks[1]])
    pool.free([blocks[0]])
    pool.free([blocks[2]])
    assert [pool.lookup(h) for h in hashes] == blocks  # freed but still hits
    pool.share(blocks[0])  # a hit takes it out of the free queue
    assert pool.num_free == 2
    (evicted,) = pool.allocate(1)  # least recently freed first: block 1
    assert evicted == blocks[1] and pool.lookup(hashes[1]) is None
    assert pool.lookup(hashes[0]) == blocks[0] and pool.lookup(hashes[2]) == blocks[2]


def test_prefix_sharing_through_kv_manager():
    pool = BlockPool(16)
    kv = KVManager(pool, block_size=4, enable_prefix_caching=True)
    prompt = list(range(10))  # two full blocks + 2 tokens
    blocks, hit = kv.allocate_prompt(prompt, cacheable_len=9)
    assert hit == 0 and len(blocks) == 3
    kv.publish(prompt, blocks, exact_len=10)
    other = prompt[:8] + [99, 98, 97]
    blocks2, hit2 = kv.allocate_prompt(other, cacheable_len=10)
    assert hit2 == 8 and blocks2[:2] == blocks[:2] and blocks2[2] not in blocks
    assert pool.ref_counts[blocks[0]] == 2
    kv.free(blocks)
    kv.free(blocks2)
    assert pool.num_free == 16 and all(c == 0 for c in pool.ref_counts)


def test_publish_respects_exact_len_and_cacheable_len():
    pool = BlockPool(8)
    kv = KVManager(pool, block_size=4, enable_prefix_caching=True)
    prompt = list(range(12))
    blocks, _ = kv.allocate_prompt(prompt, 11)
    kv.publish(prompt, blocks, exact_len=7)  # only block 0 is fully exact
    assert pool.num_cached() == 1
    _, hit = kv.allocate_prompt(prompt, cacheable_len=3)  # may not reuse past 3 tokens
    assert hit == 0
