//! How blobs are grouped for the CAS's calls: small blobs share BatchUpdateBlobs and
//! BatchReadBlobs calls up to the server's batch limit; a blob too large for any batch goes by
//! ByteStream on its own; FindMissingBlobs asks in chunks.

/// What a blob costs in a batch besides its bytes: its digest and the framing around it.
pub(super) const PER_BLOB: u64 = 128;

/// The batch limit when the server does not say (gRPC's usual message limit), and the most we
/// use when it says more: a batch is held in memory whole, a few at a time.
pub(super) const DEFAULT_MAX: u64 = 4 * 1024 * 1024;

/// Room left in a batch for the request's own fields (the instance name, the envelope).
const MARGIN: u64 = 64 * 1024;

/// Blobs per batch at most, so that many small files still move in parallel calls.
const MAX_COUNT: usize = 1000;

/// Bytes of blob data held in memory at once, over all calls: a batch is held whole (twice,
/// with its encoding), a stream a chunk or two; this, not the number of calls, keeps memory
/// flat.
const BYTES_IN_FLIGHT: u64 = 8 * 1024 * 1024;

/// The room to hold while `bytes` are in flight, in permits of 1 KiB out of
/// [`budget`]'s.
pub(super) fn permits(bytes: u64) -> u32 {
    let kib = bytes.div_ceil(1024).min(BYTES_IN_FLIGHT / 1024);
    u32::try_from(kib).unwrap_or(u32::MAX)
}

/// The semaphore that [`permits`] are taken from.
pub(super) fn budget() -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new((BYTES_IN_FLIGHT / 1024) as usize)
}

/// Digests per FindMissingBlobs call: about 0.8 MB of request, well under any message limit.
pub(super) const FIND_CHUNK: usize = 10_000;

/// The bytes a batch may hold, from the server's `max_batch_total_size_bytes` (0: unknown).
pub(super) fn batch_limit(server_max: i64) -> u64 {
    let max = match u64::try_from(server_max) {
        Ok(0) | Err(_) => DEFAULT_MAX,
        Ok(m) => m.min(DEFAULT_MAX),
    };
    max.saturating_sub(MARGIN)
}

/// Splits `items` into batches that each cost at most `limit` (see [`PER_BLOB`]), and the
/// items too large for any batch.
pub(super) fn split<T>(
    mut items: Vec<T>,
    size: impl Fn(&T) -> u64,
    limit: u64,
) -> (Vec<Vec<T>>, Vec<T>) {
    // Smallest first: the batches fill up, and every large blob ends up at the end.
    items.sort_by_key(|t| size(t));
    let mut batches = Vec::new();
    let mut large = Vec::new();
    let mut batch = Vec::new();
    let mut used = 0;
    for item in items {
        let cost = size(&item).saturating_add(PER_BLOB);
        if cost > limit {
            large.push(item);
            continue;
        }
        if used + cost > limit || batch.len() == MAX_COUNT {
            batches.push(std::mem::take(&mut batch));
            used = 0;
        }
        used += cost;
        batch.push(item);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    (batches, large)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_servers_less_a_margin_and_never_above_the_default() {
        assert_eq!(batch_limit(0), DEFAULT_MAX - MARGIN);
        assert_eq!(batch_limit(-1), DEFAULT_MAX - MARGIN);
        assert_eq!(batch_limit(1 << 30), DEFAULT_MAX - MARGIN);
        assert_eq!(batch_limit(1 << 20), (1 << 20) - MARGIN);
        assert_eq!(
            batch_limit(1000),
            0,
            "a tiny limit: everything by ByteStream"
        );
    }

    #[test]
    fn small_blobs_share_batches_within_the_limit_and_large_ones_stream() {
        let limit = 1000;
        let sizes = vec![900, 10, 400, 5000, 400, 872, 873];
        let (batches, large) = split(sizes, |s| *s, limit);
        assert_eq!(large, vec![873, 900, 5000]);
        assert_eq!(batches, vec![vec![10, 400], vec![400], vec![872]]);
        for b in &batches {
            let cost: u64 = b.iter().map(|s| s + PER_BLOB).sum();
            assert!(cost <= limit, "{b:?} costs {cost}");
        }
    }

    #[test]
    fn batches_hold_a_bounded_number_of_blobs() {
        let (batches, large) = split(vec![1u64; 2500], |s| *s, 1 << 30);
        assert!(large.is_empty());
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![1000, 1000, 500]);
    }

    #[test]
    fn a_full_batch_fits_the_budget() {
        let full = permits(batch_limit(0)) as usize;
        assert!(full <= budget().available_permits());
        assert_eq!(permits(1), 1);
        assert_eq!(permits(u64::MAX) as usize, budget().available_permits());
    }

    #[test]
    fn nothing_in_nothing_out() {
        let (batches, large) = split(Vec::<u64>::new(), |s| *s, 100);
        assert!(batches.is_empty() && large.is_empty());
    }
}
