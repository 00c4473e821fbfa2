// SPDX-License-Identifier: MIT
// Checks message partitions against the Java client's default partitioner for keyed messages:
// partition = toPositive(murmur2(key bytes)) % numPartitions (org.apache.kafka.common.utils.Utils,
// the same code the Java producer uses). Reads kcat -J envelopes on stdin; args: numPartitions.
// Prints "checked N keyed messages, M on another partition than Java's" and exits 1 if M > 0.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.common.utils.Utils;

public class Murmur2Partition {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[0]);
        // kcat -J: {"topic":"t","partition":0,"offset":1,"tstype":...,"key":"...","payload":"..."}
        Pattern part = Pattern.compile("\"partition\":(\\d+)");
        Pattern key = Pattern.compile("\"key\":\"((?:[^\"\\\\]|\\\\.)*)\"");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        int checked = 0, wrong = 0;
        for (String line; (line = in.readLine()) != null;) {
            Matcher p = part.matcher(line), k = key.matcher(line);
            if (!p.find() || !k.find())
                continue;
            String keyText = unescape(k.group(1));
            byte[] bytes = keyText.getBytes(StandardCharsets.UTF_8);
            int want = Utils.toPositive(Utils.murmur2(bytes)) % partitions;
            checked++;
            if (want != Integer.parseInt(p.group(1))) {
                if (wrong++ < 5)
                    System.out.println("key " + keyText + ": partition " + p.group(1) + ", Java: " + want);
            }
        }
        System.out.println("checked " + checked + " keyed messages, " + wrong + " on another partition than Java's");
        System.exit(wrong == 0 && checked > 0 ? 0 : 1);
    }

    private static String unescape(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c != '\\') {
                b.append(c);
                continue;
            }
            char n = s.charAt(++i);
            switch (n) {
            case 'n': b.append('\n'); break;
            case 't': b.append('\t'); break;
            case 'r': b.append('\r'); break;
            case 'b': b.append('\b'); break;
            case 'f': b.append('\f'); break;
            case 'u': b.append((char) Integer.parseInt(s.substring(i + 1, i + 5), 16)); i += 4; break;
            default: b.append(n);
            }
        }
        return b.toString();
    }
}
