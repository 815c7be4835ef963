package zt.serviceb.reload;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.concurrent.TimeUnit;

/**
 * What the periodic check compares for a file: existence, mtime, size and inode (file key).
 * A rename over the file changes the inode even within one mtime tick.
 */
public record FileStamp(boolean exists, long mtimeNanos, long size, Object fileKey) {
    public static final FileStamp ABSENT = new FileStamp(false, 0, 0, null);

    public static FileStamp of(Path file) {
        if (file == null) {
            return ABSENT;
        }
        try {
            BasicFileAttributes a = Files.readAttributes(file, BasicFileAttributes.class);
            return new FileStamp(true, a.lastModifiedTime().to(TimeUnit.NANOSECONDS), a.size(), a.fileKey());
        } catch (IOException e) {
            return ABSENT;
        }
    }
}
