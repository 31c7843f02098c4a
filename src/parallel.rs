//! Work that runs at once on rayon's pool where the build has threads (natively, and in the
//! page's threaded engine, whose pool is Web Workers), and one item after another where it has
//! none (the page's single-thread engine). The training step's shards (`train::shards`), the
//! encoder passes of batched inference (`infer::batch`) and runs trained together
//! (`train::together`) use it.
//!
//! The items' results come back in item order, so a caller's output never depends on the thread
//! count or on which item finished first. Left out: any chunking or scheduling of its own (rayon
//! splits the items and steals work).

/// Declares `$name`: the trait `$bound` where the build has threads, no requirement where it has
/// none (the page's single-thread engine, whose WebGPU tensors are neither `Send` nor `Sync`).
macro_rules! maybe_bound {
    ($name:ident, $bound:ident) => {
        #[doc = concat!("`", stringify!($bound), "` where the build has threads, nothing where it has none.")]
        #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
        pub trait $name: $bound {}
        #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
        impl<T: $bound> $name for T {}
        #[doc = concat!("`", stringify!($bound), "` where the build has threads, nothing where it has none.")]
        #[cfg(not(any(not(target_arch = "wasm32"), feature = "threads")))]
        pub trait $name {}
        #[cfg(not(any(not(target_arch = "wasm32"), feature = "threads")))]
        impl<T> $name for T {}
    };
}
maybe_bound!(MaybeSend, Send);
maybe_bound!(MaybeSync, Sync);

/// `f(i, &items[i])` for every item, at the same time where there are threads; results in item
/// order.
pub fn map<I, T, F>(items: &[I], f: F) -> Vec<T>
where
    I: MaybeSync,
    T: MaybeSend,
    F: Fn(usize, &I) -> T + MaybeSync,
{
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if items.len() > 1 {
        use rayon::prelude::*;
        return items
            .par_iter()
            .enumerate()
            .map(|(i, item)| f(i, item))
            .collect();
    }
    // One item (or a build without threads): on this thread, so a lone inference pass is not
    // handed to the pool and back (its kernels still split across the pool).
    items
        .iter()
        .enumerate()
        .map(|(i, item)| f(i, item))
        .collect()
}

/// `f(i, &mut items[i])` for every item, at the same time where there are threads; results in
/// item order. For work that advances each item's own state (several training runs, one step
/// each).
pub fn map_mut<I, T, F>(items: &mut [I], f: F) -> Vec<T>
where
    I: MaybeSend,
    T: MaybeSend,
    F: Fn(usize, &mut I) -> T + MaybeSync,
{
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if items.len() > 1 {
        use rayon::prelude::*;
        return items
            .par_iter_mut()
            .enumerate()
            .map(|(i, item)| f(i, item))
            .collect();
    }
    items
        .iter_mut()
        .enumerate()
        .map(|(i, item)| f(i, item))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order() {
        let items: Vec<usize> = (0..100).collect();
        let out = map(&items, |i, &x| (i, x * x));
        assert_eq!(out, items.iter().map(|&x| (x, x * x)).collect::<Vec<_>>());
        assert!(map(&Vec::<u8>::new(), |_, &x| x).is_empty());
    }

    #[test]
    fn map_mut_changes_every_item_and_keeps_item_order() {
        let mut items: Vec<usize> = (0..100).collect();
        let out = map_mut(&mut items, |i, x| {
            *x += 1;
            i
        });
        assert_eq!(out, (0..100).collect::<Vec<_>>());
        assert_eq!(items, (1..101).collect::<Vec<_>>());
    }
}
