//! A list that keeps its first element in place.
//!
//! Most lists the model keeps per queued file hold one element (one recipient, one
//! destination): a heap vector per file costs an allocation and its header on top of the
//! element (BENCHMARKS.md, "memory"). [`OneOrMany`] stores none or one inline and moves to
//! a vector at the second; it reads as a slice.

#[derive(Clone, Debug)]
pub enum OneOrMany<T> {
    /// None or one.
    One(Option<T>),
    /// Two or more (or fewer, after `clear` or `retain`, keeping the vector's capacity).
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::One(None)
    }
}

impl<T> OneOrMany<T> {
    pub fn push(&mut self, x: T) {
        match self {
            OneOrMany::One(slot @ None) => *slot = Some(x),
            OneOrMany::One(first @ Some(_)) => {
                let first = first.take();
                *self = OneOrMany::Many(first.into_iter().chain([x]).collect());
            }
            OneOrMany::Many(v) => v.push(x),
        }
    }

    /// Empties the list, keeping a vector's capacity.
    pub fn clear(&mut self) {
        match self {
            OneOrMany::One(x) => *x = None,
            OneOrMany::Many(v) => v.clear(),
        }
    }

    /// Keeps the elements `keep` is true for, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match self {
            OneOrMany::One(x) => {
                if x.as_ref().is_some_and(|x| !keep(x)) {
                    *x = None;
                }
            }
            OneOrMany::Many(v) => v.retain(keep),
        }
    }
}

impl<T: Copy> OneOrMany<T> {
    pub fn extend_from_slice(&mut self, xs: &[T]) {
        self.extend(xs.iter().copied());
    }
}

impl<T> Extend<T> for OneOrMany<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for x in iter {
            self.push(x);
        }
    }
}

impl<T> FromIterator<T> for OneOrMany<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = OneOrMany::default();
        list.extend(iter);
        list
    }
}

impl<T> std::ops::Deref for OneOrMany<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            OneOrMany::One(Some(x)) => std::slice::from_ref(x),
            OneOrMany::One(None) => &[],
            OneOrMany::Many(v) => v,
        }
    }
}

impl<T> std::ops::DerefMut for OneOrMany<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            OneOrMany::One(Some(x)) => std::slice::from_mut(x),
            OneOrMany::One(None) => &mut [],
            OneOrMany::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_the_slice_of_what_was_pushed_and_kept() {
        let mut xs: OneOrMany<u32> = OneOrMany::default();
        assert!(xs.is_empty());
        xs.push(7);
        assert!(matches!(xs, OneOrMany::One(Some(7))));
        xs.retain(|&x| x != 7);
        assert!(xs.is_empty());
        xs.extend([1, 2, 3]);
        assert!(matches!(xs, OneOrMany::Many(_)));
        xs.retain(|&x| x != 2);
        assert_eq!(&xs[..], [1, 3]);
        xs.clear();
        assert!(xs.is_empty());
        let ys: OneOrMany<u32> = [4].into_iter().collect();
        assert!(matches!(ys, OneOrMany::One(Some(4))));
    }
}
