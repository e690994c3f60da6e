"""Labels flow back: the labeling queue, Label Studio tasks and exports, snapshots, trust."""
