package cdc

// PeakBuffered returns the most row changes the process held in memory at once.
func (c *CDC) PeakBuffered() int64 { return c.peakBuffered.Load() }
